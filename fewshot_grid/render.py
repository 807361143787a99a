"""Text forms of the tables: Markdown (also what the console shows) and tidy CSV rows.

Cell text: `mean ± std (n)` over the seeds; `(n/expected)` when seeds are missing; `—` when
nothing finished; a seedless (zero-shot) cell is just its value. `--ci95` swaps std for the 95%
confidence half-width. Average cells: `mean ± std (n datasets)`; `incomplete (c/N)` (c of N
cells complete) when the grid is incomplete; with --allow-partial the mean of the cells that have
any value, marked `partial`.
"""
import pandas as pd
from tabulate import tabulate

from .benchmarks import display_name
from .grid import harmonic_mean

DASH = "—"


def _spread_name(ci95):
    return "ci95" if ci95 else "std"


def format_cell(cell, ci95=False):
    if not cell.values:
        return DASH
    text = f"{cell.mean:.2f}"
    if cell.n > 1:
        text += f" ± {cell.spread(ci95):.2f}"
    if cell.expected == (None,):
        return text
    count = f"{cell.n}" if cell.complete else f"{cell.n}/{len(cell.expected)}"
    return f"{text} ({count})"


def format_average(avg):
    if avg.mean is None:
        return f"incomplete ({avg.n_complete}/{avg.expected})"
    text = f"{avg.mean:.2f}"
    if avg.spread is not None:
        text += f" ± {avg.spread:.2f}"
    if avg.partial:
        return f"{text} (partial: {avg.n} averaged, {avg.n_complete}/{avg.expected} complete)"
    return f"{text} ({avg.n})"


def _seed_name(seed):
    return "run" if seed is None else f"seed {seed}"


def cell_problems(cell):
    """Why a cell is not complete (or what was left out of it), as short phrases."""
    problems = []
    if not cell.values and not cell.unfinished and not cell.left_out:
        return ["no runs"]
    for seed in cell.missing:
        if seed in cell.unfinished:
            problems.append(f"{_seed_name(seed)} unfinished ({cell.unfinished[seed]})")
        else:
            problems.append(f"{_seed_name(seed)} missing")
    for seed, path in sorted(cell.left_out.items()):
        problems.append(f"{_seed_name(seed)} left out, not in --seeds ({path})")
    return problems


def _notes(entries):
    """Markdown list of `where: problems` for the incomplete cells; the rows with no run at
    all are named together on one line."""
    empty, lines = [], []
    for where, cells in entries:
        if all(cell_problems(c) == ["no runs"] for _, c in cells):
            empty.append(where)
            continue
        for label, cell in cells:
            problems = cell_problems(cell)
            if problems:
                lines.append(f"- {where}{label}: {'; '.join(problems)}")
    if empty:
        lines.insert(0, f"- no runs: {', '.join(empty)}")
    return ["", "Incomplete or left out:"] + lines if lines else []


def _shots_header(k):
    return f"{k} shot" if k == 1 else f"{k} shots"


def _table(rows, headers):
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def fewshot_markdown(tables, keyword, ci95=False, per_seed=False):
    out = []
    for t in tables:
        seeded = any(c.expected != (None,) for c in t.cells.values())
        what = f"mean ± {_spread_name(ci95)} (seeds)" if seeded else "single runs"
        out += ["", f"## {t.method}: {keyword} (%), {what}", ""]
        rows = [[display_name(d)] + [format_cell(t.cells[(d, k)], ci95) for k in t.shots]
                for d in t.datasets]
        label = f"Average ({len(t.averaged)} datasets)"
        rows.append([label] + [format_average(t.averages[k]) for k in t.shots])
        out.append(_table(rows, ["Dataset"] + [_shots_header(k) for k in t.shots]))
        extra = [d for d in t.datasets if d not in t.averaged]
        if extra:
            out += ["", f"Not in the average: {', '.join(display_name(d) for d in extra)}"]
        out += _notes([(display_name(d), [(f", {_shots_header(k)}", t.cells[(d, k)])
                                          for k in t.shots]) for d in t.datasets])
        if per_seed and seeded:
            out += ["", "Per seed:", "", _per_seed_table(t, ci95)]
    return "\n".join(out).lstrip("\n") + "\n"


def _per_seed_table(t, ci95):
    seeds = sorted({s for c in t.cells.values() for s in list(c.values) + list(c.unfinished)},
                   key=lambda s: -1 if s is None else s)
    rows = []
    for d in t.datasets:
        for k in t.shots:
            cell = t.cells[(d, k)]
            if not cell.values and not cell.unfinished:
                continue
            values = [f"{cell.values[s]:.2f}" if s in cell.values
                      else ("unfinished" if s in cell.unfinished else DASH) for s in seeds]
            rows.append([display_name(d), str(k)] + values + [format_cell(cell, ci95)])
    headers = ["Dataset", "Shots"] + [_seed_name(s) for s in seeds] + ["mean"]
    return _table(rows, headers)


def base2new_markdown(tables, keyword, ci95=False):
    out = []
    for t in tables:
        out += ["", f"## {t.method}, {_shots_header(t.shots)}: base-to-new {keyword} (%)", ""]
        rows = []
        for d in t.datasets:
            base, new = t.base[d], t.new[d]
            hm = (f"{harmonic_mean(base.mean, new.mean):.2f}" if base.values and new.values
                  else DASH)
            rows.append([display_name(d), format_cell(base, ci95), format_cell(new, ci95), hm])
        hm_avg = (f"{harmonic_mean(t.base_avg.mean, t.new_avg.mean):.2f}"
                  if t.base_avg.mean is not None and t.new_avg.mean is not None else "incomplete")
        rows.append([f"Average ({len(t.datasets)} datasets)", format_average(t.base_avg),
                     format_average(t.new_avg), hm_avg])
        out.append(_table(rows, ["Dataset", "Base", "New", "HM"]))
        out += ["", "HM = 2·base·new/(base+new) of the means; the average row's HM is the HM "
                    "of the two averages."]
        out += _notes([(f"{display_name(d)}", [(", base", t.base[d]), (", new", t.new[d])])
                       for d in t.datasets])
    return "\n".join(out).lstrip("\n") + "\n"


def dg_markdown(rows, source, targets, keyword, ci95=False):
    headers = ["Method", "Shots", f"{display_name(source)} (source)"] + \
        [display_name(t) for t in targets] + ["Target average"]
    body = [[r.method, str(r.shots)] + [format_cell(r.cells[d], ci95) for d in
                                        [source] + list(targets)] + [format_average(r.target_avg)]
            for r in rows]
    out = [f"## Domain generalisation: {keyword} (%), trained on {display_name(source)}", "",
           _table(body, headers)]
    out += _notes([(f"{r.method}, {_shots_header(r.shots)}",
                    [(f", {display_name(d)}", r.cells[d]) for d in [source] + list(targets)])
                   for r in rows])
    return "\n".join(out) + "\n"


# ---- CSV: one tidy row per cell (and per average), the same numbers as the Markdown ----

def _row(table, method, dataset, shots, quantity, mean, spread_value, n, expected, complete,
         values=None):
    row = dict(table=table, method=method, dataset=dataset, shots=shots, quantity=quantity,
               mean=mean, spread=spread_value, n=n, expected=expected,
               complete=int(bool(complete)))
    row.update({f"seed_{seed}": v for seed, v in (values or {}).items() if seed is not None})
    return row


def _cell(table, method, dataset, shots, quantity, cell, ci95):
    return _row(table, method, dataset, shots, quantity, cell.mean, cell.spread(ci95), cell.n,
                len(cell.expected), cell.complete, cell.values)


def _avg(table, method, dataset, shots, quantity, avg):
    return _row(table, method, dataset, shots, quantity, avg.mean, avg.spread, avg.n,
                avg.expected, avg.mean is not None and not avg.partial)


def fewshot_csv_rows(tables, keyword, ci95=False):
    rows = []
    for t in tables:
        rows += [_cell("fewshot", t.method, d, k, keyword, t.cells[(d, k)], ci95)
                 for d in t.datasets for k in t.shots]
        rows += [_avg("fewshot", t.method, "average", k, keyword, t.averages[k])
                 for k in t.shots]
    return rows


def _hm_row(method, dataset, shots, base_mean, new_mean, n, expected, complete):
    both = base_mean is not None and new_mean is not None
    return _row("base2new", method, dataset, shots, "hm",
                harmonic_mean(base_mean, new_mean) if both else None, None, n, expected,
                both and complete)


def base2new_csv_rows(tables, ci95=False):
    rows = []
    for t in tables:
        for d in t.datasets:
            base, new = t.base[d], t.new[d]
            rows += [_cell("base2new", t.method, d, t.shots, "base", base, ci95),
                     _cell("base2new", t.method, d, t.shots, "new", new, ci95),
                     _hm_row(t.method, d, t.shots, base.mean, new.mean, min(base.n, new.n),
                             len(base.expected), base.complete and new.complete)]
        rows += [_avg("base2new", t.method, "average", t.shots, "base", t.base_avg),
                 _avg("base2new", t.method, "average", t.shots, "new", t.new_avg),
                 _hm_row(t.method, "average", t.shots, t.base_avg.mean, t.new_avg.mean,
                         min(t.base_avg.n, t.new_avg.n), t.base_avg.expected,
                         not (t.base_avg.partial or t.new_avg.partial))]
    return rows


def dg_csv_rows(rows_in, source, targets, keyword, ci95=False):
    rows = []
    for r in rows_in:
        rows += [_cell("dg", r.method, d, r.shots, keyword, r.cells[d], ci95)
                 for d in [source] + list(targets)]
        rows.append(_avg("dg", r.method, "target_average", r.shots, keyword, r.target_avg))
    return rows


def write_csv(path, rows, ci95=False):
    """Write tidy rows; the spread column is named `std` or `ci95`, then one column per seed."""
    frame = pd.DataFrame(rows)
    seeds = sorted((c for c in frame.columns if c.startswith("seed_")), key=lambda c: int(c[5:]))
    frame = frame[[c for c in frame.columns if not c.startswith("seed_")] + seeds]
    frame.rename(columns={"spread": _spread_name(ci95)}).to_csv(path, index=False,
                                                                 float_format="%.4f")
