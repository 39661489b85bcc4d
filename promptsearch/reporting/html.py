"""``report.html``: one self-contained page (plotly.js inline, no network) that a person reads in a browser.

It shows the best prompt with its parts and label words marked, dev and test scores against the
baseline with their spread, the Pareto front of a multi-objective study, the optimization history,
the pruning curves, fANOVA parameter importances, parallel coordinates and slices of the parameters,
and a sortable table of every trial with its rendered example prompt.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.io.export import atomic_write_text
from promptsearch.reporting.figures import Figure, report_figures
from promptsearch.reporting.highlight import highlight_html
from promptsearch.reporting.schema import Report, TestScores, evaluation_line
from promptsearch.space.registry import head_traits
from promptsearch.study.pareto import pareto_front
from promptsearch.study.records import TrialRecord, trial_records

if TYPE_CHECKING:
    import optuna

    from promptsearch.space.config import TrialConfig

__all__ = ["render_html", "write_html_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#1d2733;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9d3dd;font-size:14px}
header p.incomplete{margin-top:8px;padding:6px 10px;background:#b42318;color:#fff;border-radius:4px}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px}table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e3e8ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
.num{text-align:right;font-variant-numeric:tabular-nums}.note{color:#5b6b7b;font-style:italic}
pre.prompt{white-space:pre-wrap;background:#fbfcfd;border:1px solid #e3e8ee;border-radius:6px;padding:10px;
font-size:13px;line-height:1.5;margin:6px 0}.part{display:inline}
.part-instruction{background:#fff4d6}.part-demonstration{background:#e6f0ff;border-bottom:2px solid #9cbcf0}
.part-query{background:#eafbea}mark.label-word{background:#ffd166;padding:0 2px;border-radius:3px;font-weight:600}
mark.slot{background:#ef476f;color:#fff;padding:0 3px;border-radius:3px}
.legend span{margin-right:14px;padding:1px 6px;border-radius:3px;font-size:12px}
.state-COMPLETE{color:#217a3c}.state-PRUNED{color:#9a6700}.state-FAIL{color:#b42318}.state-RUNNING{color:#175cd3}
pre.prompt.small{font-size:12px;max-height:9em;overflow:auto;margin:0;min-width:280px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:0 24px}
@media(max-width:1000px){.grid{grid-template-columns:1fr}}
"""

# Records script errors on the page itself (the browser test reads them), then sorts tables on click.
_ERRORS_JS = """
window.promptsearchErrors=[];
window.addEventListener('error',function(e){window.promptsearchErrors.push(String(e.message));
document.documentElement.setAttribute('data-script-errors',String(window.promptsearchErrors.length));});
"""
_SORT_JS = """
function psSort(table,col,dir){
  var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
  var num=table.tHead.rows[0].cells[col].hasAttribute('data-numeric');
  rows.sort(function(a,b){
    var x=a.cells[col].getAttribute('data-value'),y=b.cells[col].getAttribute('data-value');
    if(x===''||y===''){return (x==='')-(y==='');}  // rows without a value last, in either direction
    if(num){x=parseFloat(x);y=parseFloat(y);return dir*((x>y)-(x<y));}
    return dir*String(x).localeCompare(String(y));});
  rows.forEach(function(r){body.appendChild(r);});
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c,i){
    if(i===col){c.setAttribute('aria-sort',dir>0?'ascending':'descending');}else{c.removeAttribute('aria-sort');}});
  table.setAttribute('data-sorted-by',String(col));
}
document.querySelectorAll('table.sortable').forEach(function(table){
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){psSort(table,i,th.getAttribute('aria-sort')==='descending'?1:-1);});});
  var first=table.getAttribute('data-default-sort');
  if(first!==null){psSort(table,parseInt(first,10),parseInt(table.getAttribute('data-default-dir')||'-1',10));}
});
document.documentElement.setAttribute('data-report-ready','1');
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _test_cell(test: TestScores | None) -> str:
    if not test:
        return '<td class="note">not evaluated</td>'
    seeds = ", ".join(f"{100 * s:.2f}" for s in test.scores)
    return (
        f'<td class="num" data-value="{test.mean}">{100 * test.mean:.2f} ± {100 * test.std:.2f} '
        f'(n={len(test.scores)})</td><td class="num">{seeds}</td>'
    )


def _scores_section(report: Report, figure: Figure) -> str:
    rows = []
    first = "recommended config" if report.objectives.multi else "best prompt"
    best, base = report.best, report.baseline
    same = bool(best and base and best.trial == base.trial)
    shown = [("plain fine-tuning baseline (also the best)", base)] if same else [(first, best)]
    if not same:
        shown.append(("plain fine-tuning baseline", base))
    for name, item in shown:
        if not item:
            rows.append(f"<tr><td>{name}</td><td colspan=5 class=note>none</td></tr>")
            continue
        rows.append(
            f"<tr><td>{name}</td><td class=num>{item.trial}</td><td class=num>{_pct(item.dev_score)}</td>"
            f"<td class=num>{_e(item.dev_epoch)}</td>{_test_cell(item.test)}</tr>"
        )
    gap = ""
    if best and base and not same and best.test and base.test:
        diff = 100 * (best.test.mean - base.test.mean)
        gap = f"<p>Test difference, best prompt − baseline: <b>{diff:+.2f}</b> points.</p>"
    return (
        '<section id="scores"><h2>Scores</h2>'
        f"<p>Metric <b>{_e(report.metric)}</b> × 100. Dev is the search's score (the best trial's best epoch); "
        "test is the final evaluation, retrained with several seeds (mean ± std), never read by the search.</p>"
        "<table><thead><tr><th></th><th>trial</th><th>dev</th><th>dev epoch</th><th>test</th><th>test per seed</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{gap}{_figure_html(figure)}</section>"
    )


def _prompt_block(
    title: str,
    trial: int,
    config: TrialConfig,
    example: str,
    parts: list[list[str]] | None = None,
    generated: dict[str, Any] | None = None,
) -> str:
    dumped = config.model_dump(mode="json")
    prompt, train = dumped["prompt"], dumped["train"]
    words = ", ".join(
        f'{_e(lab)} → <mark class="label-word">{_e(w)}</mark>' for lab, w in prompt["label_words"].items()
    )
    generated = generated or {}

    def mark(part: str) -> str:
        info = generated.get(part)
        return f' <span class="note">(generated: {_e(info["key"])}, {_e(info["source"])})</span>' if info else ""

    items = [
        *([("model", f"{_e(config.model)} ({_e(config.head)} head)")] if config.model else []),
        ("instruction", _e(repr(prompt["instruction"])) + mark("instruction")),
    ]
    if head_traits(config.head).reads_template:  # a head that reads only the text has no prompt beyond it
        items += [
            (
                "template",
                f"<code>{_e(repr(prompt['template']))}</code>" if prompt["template"] else "none (plain input)",
            ),
            ("label words", words + mark("label_words")),
            ("demonstrations", f"{prompt['demonstrations']['count']} ({_e(prompt['demonstrations']['selection'])})"),
            ("calibration", _e(prompt.get("calibration", "none"))),
        ]
    items.append(("training", _e(", ".join(f"{k}={v}" for k, v in train.items()))))
    listing = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    legend = (
        '<p class="legend"><span class="part-instruction">instruction</span>'
        '<span class="part-demonstration">demonstration</span><span class="part-query">query</span>'
        '<mark class="label-word">label word</mark> <mark class="slot">answer slot</mark></p>'
    )
    return (
        f"<h2>{_e(title)} · trial {trial}</h2><table>{listing}</table>"
        f"<p>First train prompt as the model sees it:</p>{legend}"
        f'<pre class="prompt">{highlight_html(example, prompt, parts)}</pre>'
    )


def _best_sampled(records: Sequence[TrialRecord], maximize: bool) -> TrialRecord | None:
    done = [r for r in records if r.is_point and not r.is_baseline and r.config is not None]
    sign = -1.0 if maximize else 1.0
    return min(done, key=lambda r: (sign * (r.dev or 0.0), r.number)) if done else None


def _best_section(report: Report, records: Sequence[TrialRecord]) -> str:
    best = report.best
    if not best:
        return '<section id="best-prompt"><h2>Best prompt</h2><p class=note>No completed trial yet.</p></section>'
    reads_template = head_traits(best.config.head).reads_template  # else the instruction and text are all it reads
    title = "Recommended config" if report.objectives.multi else "Best prompt" if reads_template else "Best config"
    example = best.prompt_example or ""
    if not best.config.baseline:
        block = _prompt_block(title, best.trial, best.config, example, best.prompt_parts, best.generated)
        return f'<section id="best-prompt">{block}</section>'
    parts = [_prompt_block(f"{title}: the plain fine-tuning baseline", best.trial, best.config, example)]
    runner_up = _best_sampled(records, report.direction == "maximize")
    if runner_up is not None and runner_up.config is not None:
        parts.append(
            f'<p class="note">No sampled prompt beat the baseline on dev; the best of them scored '
            f"{_pct(runner_up.dev)} against {_pct(best.dev_score)}.</p>"
        )
        parts.append(
            _prompt_block(
                "Best sampled prompt",
                runner_up.number,
                runner_up.config,
                runner_up.prompt_example or "",
                runner_up.prompt_parts,
            )
        )
    return f'<section id="best-prompt">{"".join(parts)}</section>'


def _pareto_section(study: optuna.Study, report: Report, records: Sequence[TrialRecord], figure: Figure | None) -> str:
    names = report.objectives.names
    chosen = report.best
    rows = []
    for t in pareto_front([r for r in records if r.is_point], study.directions):
        mark = " ★ recommended" if chosen and chosen.trial == t.number else ""
        values = "".join(
            f"<td class=num>{_pct(v) if i == 0 else f'{v:.4g}'}</td>" for i, v in enumerate(t.values or [])
        )
        base = " (baseline)" if t.is_baseline else ""
        rows.append(f"<tr><td>{t.number}{base}{mark}</td>{values}</tr>")
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    directions = report.objectives.directions
    return (
        '<section id="pareto"><h2>Pareto front and recommended config</h2>'
        f"<p>Objectives: {_e(', '.join(f'{n} ({d})' for n, d in zip(names, directions, strict=True)))}."
        f" Recommended by the rule: {_e(report.objectives.rule)}.</p>"
        f"<table><thead><tr><th>trial</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{_figure_html(figure) if figure else ''}</section>"
    )


def _models_section(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{_e(r.model)}</td><td>{_e(r.head or '–')}</td><td class=num>{r.trials}</td>"
        f"<td class=num>{_e(r.best_trial if r.best_trial is not None else '–')}</td>"
        f"<td class=num>{_pct(r.dev_score)}</td>"
        f"<td>{_e(', '.join(f'{k}={_short(v)}' for k, v in r.params.items() if k != 'model'))}</td></tr>"
        for r in report.models
    )
    return (
        '<section id="models"><h2>Best trial per model</h2><p>The best sampled trial of each model (dev).</p>'
        "<table><thead><tr><th>model</th><th>head</th><th>trials</th><th>best trial</th><th>dev</th>"
        f"<th>parameters</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _candidates_section(report: Report) -> str:
    from promptsearch.study.candidates import describe

    items = [f'<li style="margin-left:{20 * level}px">{_e(text)}</li>' for level, text in describe(report.candidates)]
    return (
        '<section id="candidates"><h2>Generated candidates</h2><p>Generated once for this study and stored with '
        f"it; every worker and resumed run chose among this list.</p><ul>{''.join(items)}</ul></section>"
    )


def _figure_html(fig: Figure) -> str:
    if fig.figure is None:
        return f'<div class="plot-note" id="note-{fig.key}"><p class="note">{_e(fig.note)}</p></div>'
    body: str = fig.figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"plot-{fig.key}",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="plot" data-plot="{fig.key}">{body}</div>'


def _plot_section(fig: Figure) -> str:
    return f'<section id="{fig.key}"><h2>{_e(fig.title)}</h2>{_figure_html(fig)}</section>'


def _trials_section(report: Report, records: Sequence[TrialRecord]) -> str:
    names = report.objectives.names or ["dev"]
    extra = names[1:] if report.objectives.multi else []
    head = (
        "<th data-numeric>trial</th><th>state</th><th data-numeric>dev</th>"
        + "".join(f"<th data-numeric>{_e(n)}</th>" for n in extra)
        + "<th data-numeric>tokens</th><th data-numeric>epochs</th><th data-numeric>seconds</th>"
        "<th>parameters</th><th>example prompt</th>"
    )
    rows = []
    for t in records:
        dev = t.dev
        seconds = t.duration
        tokens = t.prompt_tokens_mean
        if t.is_baseline:
            params = "baseline (plain fine-tuning)"
        else:
            params = "<br>".join(f"{_e(k)}={_e(_short(v))}" for k, v in t.params.items())
        reason = t.failure or t.pruned_reason or _pool_note(t)
        state = t.state.name + (f'<br><span class="note">{_e(reason[:200])}</span>' if reason else "")
        example = t.prompt_example
        prompt = t.config.prompt.model_dump(mode="json") if t.config is not None else None
        marked = highlight_html(example or "", prompt, t.prompt_parts)
        prompt_cell = f'<pre class="prompt small">{marked}</pre>' if example else '<span class="note">none</span>'
        costs = "".join(_num_cell(v) for v in (t.values[1:] if t.values else [None] * len(extra)))
        rows.append(
            f'<tr><td class=num data-value="{t.number}">{t.number}</td>'
            f'<td data-value="{t.state.name}" class="state-{t.state.name}">{state}</td>'
            f'<td class=num data-value="{"" if dev is None else dev}">{_pct(dev)}</td>{costs}'
            f"{_num_cell(tokens)}{_num_cell(t.epochs_run)}"
            f'<td class=num data-value="{"" if seconds is None else round(seconds, 2)}">'
            f"{'–' if seconds is None else f'{seconds:.1f}'}</td>"
            f'<td data-value="{_e(json.dumps(t.params, default=str))}">{params}</td>'
            f'<td data-value="{_e(example or "")}">{prompt_cell}</td></tr>'
        )
    direction = 1 if report.direction == "minimize" else -1
    return (
        '<section id="trials"><h2>All trials</h2><p>Click a column to sort (best dev score first).</p>'
        f'<table class="sortable" id="trials-table" data-default-sort="2" data-default-dir="{direction}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _pool_note(t: TrialRecord) -> str:
    """A config trained in several trials: which trial holds the mean over its runs."""
    if t.pooled_into is not None:
        return f"one run of a config; its mean over all runs is trial {t.pooled_into}'s value"
    if t.runs > 1:
        return f"mean of {t.runs} runs (trials {', '.join(map(str, t.pooled_trials))})"
    return ""


def _num_cell(value: Any) -> str:
    shown = "–" if value is None else (f"{value:.4g}" if isinstance(value, float) else _e(value))
    return f'<td class=num data-value="{"" if value is None else value}">{shown}</td>'


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _chosen_section(report: Report) -> str:
    """How the best was chosen: the scoring protocol, the finalists (mean ± standard error) and the verdict."""
    parts = []
    how = evaluation_line(report)
    if how:
        parts.append(f"<p>{_e(how[0].upper() + how[1:])}.</p>")
    race = report.race
    if race is not None:
        rows = "".join(
            f"<tr><td>{'→ ' if s.trial == race.winner else ''}{_e(s.name)}</td><td class=num>{_pct(s.search_value)}"
            f"</td><td class=num>{_pct(s.mean)}</td><td class=num>"
            f"{'' if s.std_error is None else f'± {100 * s.std_error:.2f}'}</td><td class=num>{s.n}</td>"
            f"<td>{_e(s.cost)}</td></tr>"
            for s in race.standings
        )
        parts.append(
            "<h3>Finalists, scored again on fresh seeds</h3><table><thead><tr><th></th><th>search</th><th>mean</th>"
            f"<th>standard error</th><th>n</th><th>cost</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{_e(race.reason)}</p>" + "".join(f"<p class=note>{_e(n)}</p>" for n in race.notes)
        )
    if report.verdict is not None:
        v = report.verdict
        parts.append(f"<p>Verdict on test, best vs baseline: <b>{_e(v.label)}</b>: {_e(v.text)}</p>")
    if report.gap_warning:
        parts.append(f"<p><b>Warning:</b> {_e(report.gap_warning)}</p>")
    if not parts:
        return ""
    return f'<section id="chosen"><h2>How the best was chosen</h2>{"".join(parts)}</section>'


def render_html(study: optuna.Study, report: Report, records: Sequence[TrialRecord] | None = None) -> str:
    """The whole page as one string (plotly.js inline). ``records``: the study's trial records, if read already."""
    from plotly.offline import get_plotlyjs

    records = trial_records(study) if records is None else records
    figures = {f.key: f for f in report_figures(study, report, records)}
    t = report.trials
    summary = (
        f"study <b>{_e(report.study)}</b> · space file <code>{_e(report.space.file)}</code> · "
        f"{t.total} trials ({t.complete} complete, {t.pruned} pruned, {t.fail} failed"
        + (f", {t.running} running" if t.running else "")
        + ")"
    )
    sections = [_scores_section(report, figures.pop("scores"))]
    chosen = _chosen_section(report)
    if chosen:
        sections.append(chosen)
    sections.append(_best_section(report, records))
    if report.objectives.multi:
        sections.append(_pareto_section(study, report, records, figures.pop("pareto", None)))
    if report.models:
        sections.append(_models_section(report))
    if report.candidates:
        sections.append(_candidates_section(report))
    pairs = [["history", "intermediate"], ["importance", "parallel"], ["slice"]]
    for keys in pairs:
        shown = [figures[k] for k in keys if k in figures]
        if len(shown) == 2 and all(f.key != "parallel" for f in shown):
            sections.append('<div class="grid">' + "".join(_plot_section(f) for f in shown) + "</div>")
        else:
            sections.extend(_plot_section(f) for f in shown)
    sections.append(_trials_section(report, records))
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    created = report.created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>promptsearch report: {_e(report.space.name)}</title><style>{_CSS}</style>"
        f"<script>{_ERRORS_JS}</script><script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>promptsearch report: {_e(report.space.name)}</h1><p>{summary}</p>"
        + (f'<p class="incomplete"><b>Incomplete study:</b> {_e(report.incomplete)}</p>' if report.incomplete else "")
        + "</header>"
        f"<main>{''.join(sections)}<p class=note>Generated {_e(created)} with {_e(versions)}. "
        "This file is self-contained and works offline.</p></main>"
        f"<script>{_SORT_JS}</script></body></html>\n"
    )


def write_html_report(
    out_dir: Path, study: optuna.Study, report: Report, records: Sequence[TrialRecord] | None = None
) -> Path:
    """Write ``report.html`` in ``out_dir`` (atomically) and return its path."""
    path = out_dir / "report.html"
    atomic_write_text(path, render_html(study, report, records))
    return path
