"""Report sections about annotator groups: alignment per group (forest plots, permutation tests with
Benjamini–Hochberg correction, minimum detectable differences, idiosyncratic variation), the group
association index (IRR / XRR / GAI), and persona-based prediction of group differences."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import median

from accord.analysis.catalogue import MetricName
from accord.analysis.results import MetricRecord
from accord.report import plots
from accord.report.context import ReportContext, section
from accord.report.format import bracket, count, interval, is_number, num, p_phrase, pvalue, share
from accord.report.metrics import MetricIndex, rater_label
from accord.report.views import (
    Cell, PartView, PlotView, SectionView, TableView, ci_cell, count_cell, mark_cell, number_cell, p_cell,
    significant, text, value_cell
)

GROUP_R = MetricName.GROUP_PEARSON_R
MDD = MetricName.MIN_DETECTABLE_R_DIFFERENCE


def short_group(name: str) -> str:
    """'gender=Woman&race=Black' -> 'Woman & Black'."""
    return " & ".join(part.split("=", 1)[-1] for part in name.split("&"))


def attribute_label(attribute: str) -> str:
    return " × ".join(attribute.split("&"))


def slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", value).strip("-").lower() or "x"


def attributes(idx: MetricIndex) -> list[str]:
    """Attributes (and intersections) with group metrics, in the suite's order."""
    seen: dict[str, None] = {}
    for row in idx.all(MetricName.GROUP_R_GAP):
        seen.setdefault(row.slice, None)
    for name in (GROUP_R, MetricName.GROUP_GAI):
        for row in idx.all(name):
            attr = row.details.get("attribute")
            if attr:
                seen.setdefault(str(attr), None)
    return list(seen)


def _groups_of(idx: MetricIndex, attribute: str) -> list[tuple[str, int | None]]:
    """(group name, annotators) of one attribute, in the suite's order."""
    seen: dict[str, int | None] = {}
    for name in (GROUP_R, MetricName.GROUP_GAI):
        for row in idx.all(name):
            if row.details.get("attribute") == attribute and row.slice not in seen:
                size = row.details.get("group_size")
                seen[row.slice] = int(size) if is_number(size) else None
    return list(seen.items())


def _mdd_rows(idx: MetricIndex, group_names: set[str], rater: tuple[str, str]) -> list[MetricRecord]:
    out = []
    for row in idx.all(MDD, model=rater[0], template=rater[1]):
        first = row.slice.split(" vs ", 1)[0]
        if first in group_names:
            out.append(row)
    return out


def _pair_mdd(rows: list[MetricRecord], g1: str | None, g2: str | None) -> MetricRecord | None:
    for row in rows:
        if row.slice in (f"{g1} vs {g2}", f"{g2} vs {g1}"):
            return row
    return None


# ------------------------------------------------------------------------------------------------ disparity

GROUPS_INTRO = ("The same correlation as above, but against the mean rating of one demographic group at a time (r_G). "
                "A small group's mean rating is noisier, so its r_G is lower whatever the model does; the headline "
                "is therefore the effect relative to random groups of the same size: r_G − r_rest minus what "
                "randomly drawn groups of that size give (annotators' group labels shuffled, sizes kept), with "
                "the interval from inverting that permutation test. Zero means the model agrees with the group "
                "exactly as much as group size alone predicts. Beside r_G the table gives two size-robust "
                "estimates: the mean of the members' individual r with the model, and r_G corrected for the "
                "reliability of a mean of that many annotators (Spearman–Brown). A red point with a star marks a "
                "group whose effect differs from zero (equal-tailed permutation p, Benjamini–Hochberg adjusted "
                "across groups, adjusted p < 0.05). The gap of an attribute is the spread of the groups' r_G "
                "relative to random groups of the same size; the highest and lowest group are named only when "
                "that gap is significant. The detectable gap is the smallest difference in r between two groups "
                "this run could find with 80% power (Fisher z): when it is large, the data are too small to tell "
                "the groups apart.")
ASSOCIATION_INTRO = ("IRR: agreement among a group's own members; XRR: agreement between the group's members and "
                     "every other annotator with a known value of the attribute, including members of groups too "
                     "small to test (cross-replication reliability, Wong, Paritosh & Aroyo 2021, items weighted by "
                     "their number of ratings); GAI = IRR / XRR. "
                     "A GAI above 1 means the group agrees with itself more than with others. The grey band is what "
                     "95% of random groups of the same size give; a star marks a group outside it, in either "
                     "direction (two-sided permutation test), after Benjamini–Hochberg correction (adjusted p < 0.05).")
PERSONA_INTRO = ("The model rates every item once per persona ('answer as a woman would'). For a pair of groups, "
                 "the difference between its two persona ratings is its predicted gap; the real gap is the "
                 "difference between the groups' mean ratings. r: correlation of predicted and real gaps over "
                 "items. Direction: on items where the groups really differ (by more than the threshold), the "
                 "share where the predicted gap points the same way (50% is chance; one-sided sign test).")
EFFECT = "effect_vs_random_groups"
MAX_LISTED_GROUPS = 8


@dataclass
class AttributeFindings:
    """What one attribute's group analysis found, over all raters (for its reading)."""

    attribute: str
    groups: list[tuple[str, int | None]]
    skipped: str = ""
    findings: list[str] = field(default_factory=list)
    smallest_p: float | None = None
    detectable: list[float] = field(default_factory=list)
    observed: list[tuple[float, str, str]] = field(default_factory=list)   # (|difference|, rater, pair)
    n_exceeding: int = 0
    n_pairs: int = 0
    items: list[int] = field(default_factory=list)
    sd_ratios: list[float] = field(default_factory=list)

    not_tested: list[tuple[str, int | None, str]] = field(default_factory=list)   # (group, size, reason)
    unknown: int | None = None

    def note_p(self, p_adj: float | None) -> None:
        if p_adj is not None:
            self.smallest_p = p_adj if self.smallest_p is None else min(self.smallest_p, p_adj)


@dataclass
class GroupTables:
    gaps: list[list[Cell]] = field(default_factory=list)
    idiosyncratic: list[list[Cell]] = field(default_factory=list)
    groups: list[list[Cell]] = field(default_factory=list)
    pairs: list[list[Cell]] = field(default_factory=list)


@section("groups", "Alignment per annotator group",
         GROUPS_INTRO,
         needs=[GROUP_R, MetricName.GROUP_R_GAP])
def groups_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    tables = GroupTables()
    summaries: list[AttributeFindings] = []
    for attr in attributes(idx):
        found, part = _attribute_part(ctx, attr, tables)
        summaries.append(found)
        sec.parts.append(part)
    sec.readings.append(_groups_overview(summaries))
    sec.tables += [
        TableView("group-gaps", "Spread between groups per attribute",
                  ["attribute", "model", "template", "groups", "highest r_G", "lowest r_G",
                   "gap (vs random groups)", "p", "p adj. (BH)", "",
                   "detectable gap", "verdict"], tables.gaps, empty="no group comparisons"),
        TableView("idiosyncratic", "Idiosyncratic variation: spread of annotators' individual r with the model",
                  ["attribute", "model", "template", "SD within groups", "SD over all", "ratio", "annotators"],
                  tables.idiosyncratic, empty="no annotator-level correlations"),
        TableView("group-r", "r per group", ["attribute", "group", "model", "template", "annotators", "items",
                                             "effect vs random groups", "95% CI (effect)", "r_G", "95% CI",
                                             "r_G random groups", "mean annotator r", "r_G (Spearman–Brown)",
                                             "r rest", "r_G − r rest", "p (perm.)", "p adj. (BH)", "", "JSD"],
                  tables.groups, empty="no group correlations", collapsed=True),
        TableView("min-detectable", "Minimum detectable difference in r per pair of groups (80% power, α = 0.05)",
                  ["attribute", "pair", "model", "template", "items (1)", "items (2)", "detectable Δr",
                   "observed Δr", "observed ≥ detectable"], tables.pairs, empty="no pairs of groups", collapsed=True),
    ]
    return sec


def _attribute_part(ctx: ReportContext, attr: str, tables: GroupTables) -> tuple[AttributeFindings, PartView]:
    idx = ctx.index
    found = AttributeFindings(attr, _groups_of(idx, attr))
    for row in idx.all(MetricName.GROUP_NOT_TESTED):
        if row.details.get("attribute") == attr:
            size = row.details.get("group_size")
            found.not_tested.append((row.slice, int(size) if is_number(size) else None,
                                     str(row.details.get("skipped", ""))))
    unknown = idx.one(MetricName.GROUP_UNKNOWN_ANNOTATORS, attr)
    if unknown is not None and is_number(unknown.value):
        found.unknown = int(unknown.value)
    names = {g for g, _ in found.groups}
    effect_mode = any(EFFECT in row.details for row in idx.all(GROUP_R) if row.details.get("attribute") == attr)
    panels = []
    for rater in idx.raters():
        gap = idx.one(MetricName.GROUP_R_GAP, attr, *rater)
        if gap is not None and gap.value is None and "skipped" in gap.details:
            found.skipped = str(gap.details["skipped"])
        group_r = {row.slice: row for row in idx.all(GROUP_R, model=rater[0], template=rater[1])
                   if row.details.get("attribute") == attr}
        pairs = _mdd_rows(idx, names, rater)
        _pair_rows(attr, rater, pairs, found, tables)
        rows = _group_rows(idx, attr, rater, found, group_r, tables)
        gap_pair = None
        if gap is not None:
            gap_pair = _pair_mdd(pairs, gap.details.get("highest"), gap.details.get("lowest"))
            _gap_row(attr, rater, gap, group_r.values(), gap_pair, pairs, len(found.groups), found, tables)
        idio = idx.one(MetricName.IDIOSYNCRATIC_SD_WITHIN_GROUPS, attr, *rater)
        if idio is not None:
            ratio = idio.detail("ratio_within_to_all")
            if ratio is not None:
                found.sd_ratios.append(ratio)
            tables.idiosyncratic.append([
                text(attribute_label(attr)), text(rater[0]), text(rater[1]), value_cell(idio),
                number_cell(idio.details.get("sd_all")), number_cell(ratio), count_cell(idio.n)])
        subtitle = []
        if gap is not None and gap.value is not None:
            subtitle.append(f"gap {num(gap.value)} (adj. p {pvalue(gap.p_adjusted)})")
        detectable = _detectable(gap_pair, pairs)
        if detectable is not None:
            subtitle.append(f"detectable gap ≈ {num(detectable)}")
        if effect_mode:
            rows = [_effect_forest_row(group_r.get(gname), gname, size) for gname, size in found.groups]
        panels.append(plots.ForestPanel(rater_label(rater), rows,
                                        0.0 if effect_mode else
                                        idx.value(MetricName.PEARSON_R_VS_MEAN, "all", *rater),
                                        "; ".join(subtitle)))
    part = PartView(attribute_label(attr), [_attribute_reading(found)])
    plot_name = f"groups-{slug(attr)}"
    if effect_mode:
        title = f"Alignment per {attribute_label(attr)} group relative to random groups of the same size"
        xlabel, ref_label = "effect vs random groups of the same size", "no effect (0)"
    else:
        title = f"Alignment per {attribute_label(attr)} group: r between LLM score and the group's mean rating"
        xlabel, ref_label = "r with the group's mean rating", "r with all annotators"
    if ctx.add_plot(plot_name, plots.forest_plot(panels, title, xlabel, ref_label,
                                                 "differs from the other annotators (BH-adjusted p < 0.05)")):
        part.plots.append(PlotView(plot_name, f"forest plot of r per {attribute_label(attr)} group"))
    return found, part


def _effect_forest_row(row: MetricRecord | None, gname: str, size: int | None) -> plots.ForestRow:
    label = f"{short_group(gname)} ({size})" if size is not None else short_group(gname)
    if row is None:
        return plots.ForestRow(label, None)
    ci = row.details.get("effect_ci") or [None, None]
    return plots.ForestRow(label, row.detail(EFFECT), ci[0], ci[1], significant(row.p_adjusted))


def _pair_rows(attr: str, rater: tuple[str, str], pairs: list[MetricRecord], found: AttributeFindings,
               tables: GroupTables) -> None:
    for row in pairs:
        found.n_pairs += 1
        if row.value is not None:
            found.detectable.append(row.value)
        exceeds = bool(row.details.get("observed_exceeds"))
        found.n_exceeding += exceeds
        observed = row.detail("observed_difference")
        if observed is not None:
            found.observed.append((abs(observed), rater_label(rater), short_pair(row.slice)))
        for key in ("n1", "n2"):
            if is_number(row.details.get(key)):
                found.items.append(int(row.details[key]))
        tables.pairs.append([text(attribute_label(attr)), text(short_pair(row.slice)), text(rater[0]), text(rater[1]),
                             count_cell(row.details.get("n1")), count_cell(row.details.get("n2")), value_cell(row),
                             number_cell(observed), text("yes" if exceeds else "no")])


def _group_rows(idx: MetricIndex, attr: str, rater: tuple[str, str], found: AttributeFindings,
                group_r: dict[str, MetricRecord], tables: GroupTables) -> list[plots.ForestRow]:
    rows = []
    for gname, size in found.groups:
        row = group_r.get(gname)
        label = f"{short_group(gname)} ({size})" if size is not None else short_group(gname)
        if row is None:
            rows.append(plots.ForestRow(label, None))
            continue
        p_adj = row.p_adjusted
        found.note_p(p_adj)
        effect = row.detail(EFFECT)
        if significant(p_adj):
            finding = (f"for {rater_label(rater)}, {short_group(gname)} (r = {num(row.value)} against "
                       f"{num(row.details.get('r_rest'))} for the other annotators")
            if effect is not None:
                ci = row.details.get("effect_ci") or [None, None]
                direction = "more" if effect > 0 else "less"
                finding += (f"; {num(abs(effect))} {direction} than random groups of {count(size)} give, 95% CI "
                            f"{interval(ci[0], ci[1])}")
            found.findings.append(finding + f", {p_phrase(p_adj, 'adjusted p')})")
        rows.append(plots.ForestRow(label, row.value, row.ci_low, row.ci_high, significant(p_adj)))
        eci = row.details.get("effect_ci") or [None, None]
        tables.groups.append([
            text(attribute_label(attr)), text(short_group(gname)), text(rater[0]), text(rater[1]), count_cell(size),
            count_cell(row.n), number_cell(effect), Cell(bracket(eci[0], eci[1]), "num"), value_cell(row),
            ci_cell(row), number_cell(row.details.get("r_random_groups_same_size")),
            number_cell(row.details.get("mean_annotator_r")), number_cell(row.details.get("spearman_brown_r")),
            number_cell(row.details.get("r_rest")),
            number_cell(row.details.get("r_minus_rest")), p_cell(row.pvalue), p_cell(p_adj), mark_cell(p_adj),
            value_cell(idx.one(MetricName.JSD_MEAN, gname, *rater))])
    return rows


def _gap_row(attr: str, rater: tuple[str, str], gap: MetricRecord, group_rows: Iterable[MetricRecord],
             gap_pair: MetricRecord | None, pairs: list[MetricRecord], n_groups: int,
             found: AttributeFindings, tables: GroupTables) -> None:
    verdict = _verdict(gap, group_rows, gap_pair, pairs)
    cls = "warn" if verdict.startswith("too small") else ("sig" if "differ" in verdict else "")
    tables.gaps.append([
        text(attribute_label(attr)), text(rater[0]), text(rater[1]), count_cell(n_groups),
        text(_group_with_r(gap, "highest")), text(_group_with_r(gap, "lowest")), value_cell(gap), p_cell(gap.pvalue),
        p_cell(gap.p_adjusted), mark_cell(gap.p_adjusted), number_cell(_detectable(gap_pair, pairs)),
        Cell(verdict, cls, gap.short_reason)])
    if significant(gap.p_adjusted):
        named = ""
        if gap.details.get("highest") and gap.details.get("lowest"):
            named = (f", {short_group(str(gap.details.get('highest')))} highest, "
                     f"{short_group(str(gap.details.get('lowest')))} lowest")
        found.findings.append(
            f"for {rater_label(rater)}, the spread between groups (gap {num(gap.value)}{named}) is larger than "
            f"random groupings give ({p_phrase(gap.p_adjusted, 'adjusted p')})")


def short_pair(pair: str) -> str:
    """'gender=Man vs gender=Woman' -> 'Man vs Woman'."""
    return " vs ".join(short_group(p) for p in pair.split(" vs "))


def _group_with_r(gap: MetricRecord, which: str) -> str:
    """The named highest/lowest group with its r_G and, where known, its r_G relative to random groups of its
    size (the basis of the naming)."""
    name = gap.details.get(which)
    if not name:
        return ""
    r = (gap.details.get("group_r") or {}).get(name)
    excess = (gap.details.get("excess_r") or {}).get(name)
    if is_number(excess):
        sign = "+" if excess >= 0 else ""
        return f"{short_group(str(name))} ({num(r)}; {sign}{num(excess)} vs random groups)"
    return f"{short_group(str(name))} ({num(r)})"


def _detectable(gap_pair: MetricRecord | None, pairs: list[MetricRecord]) -> float | None:
    """The detectable difference for the gap: that of the (highest, lowest) pair, else the median over pairs."""
    if gap_pair is not None and gap_pair.value is not None:
        return gap_pair.value
    values = [r.value for r in pairs if r.value is not None]
    return median(values) if values else None


def _verdict(gap: MetricRecord, group_rows: Iterable[MetricRecord], gap_pair: MetricRecord | None,
             pairs: list[MetricRecord]) -> str:
    if gap.value is None:
        return "not tested"
    if significant(gap.p_adjusted):
        return "groups differ"
    if any(significant(r.p_adjusted) for r in group_rows):
        return "a group differs from the rest"
    detectable = _detectable(gap_pair, pairs)
    if detectable is not None and gap.value < detectable:
        return "too small to tell"
    return "no evidence of a difference"


def _listed_groups(groups: list[tuple[str, int | None]]) -> str:
    if len(groups) > MAX_LISTED_GROUPS:
        sizes = [s for _, s in groups if s is not None]
        span = f" of {min(sizes)}–{max(sizes)} annotators each" if sizes else ""
        return f"{len(groups)} groups{span}"
    listed = ", ".join(f"{short_group(g)} ({count(s)})" if s is not None else short_group(g) for g, s in groups)
    return f"{len(groups)} groups (annotators in brackets): {listed}"


def _attribute_reading(found: AttributeFindings) -> str:
    label = attribute_label(found.attribute)
    parts = [f"{label}: {_listed_groups(found.groups)}." if found.groups else f"{label}:"]
    if found.not_tested:
        listed = "; ".join(f"{short_group(g)} ({count(size)} annotator{'s' if size != 1 else ''}): {reason}"
                           for g, size, reason in found.not_tested)
        parts.append(f"Not tested: {listed}.")
    if found.unknown:
        parts.append(f"{count(found.unknown)} annotator{'s have' if found.unknown != 1 else ' has'} no known "
                     f"{label} and belong{'' if found.unknown != 1 else 's'} to no group.")
    if found.skipped:
        parts.append(f"Not tested: {found.skipped}.")
        return " ".join(parts)
    if found.findings:
        parts.append("After Benjamini–Hochberg correction the data show a difference " + "; ".join(found.findings)
                     + ".")
    elif found.smallest_p is not None:
        parts.append(f"No group's r differs from that of the other annotators after Benjamini–Hochberg correction "
                     f"(smallest adjusted p = {pvalue(found.smallest_p)}).")
    if found.detectable:
        typical = median(found.detectable)
        items = f"With {min(found.items)}–{max(found.items)} items per group, a" if found.items else "A"
        sentence = (f"{items} difference in r between two {label} groups has to reach about {num(typical)} "
                    f"(range {num(min(found.detectable))}–{num(max(found.detectable))} over pairs and raters) to be "
                    f"detected with 80% power")
        if typical >= 1:
            sentence += " — more than any realistic difference, so these groups are far too small to compare"
        parts.append(sentence + ".")
        if found.observed:
            largest = max(found.observed)
            parts.append(f"The largest observed difference is {num(largest[0])} ({largest[1]}, {largest[2]}); "
                         f"{found.n_exceeding} of {found.n_pairs} pair comparisons reach their detectable difference.")
        if not found.findings and (not found.observed or max(found.observed)[0] < typical):
            parts.append("So this run is too small to tell whether the model aligns differently with these groups: "
                         "a real difference of moderate size would usually go unnoticed.")
    if found.sd_ratios:
        lo, hi = min(found.sd_ratios), max(found.sd_ratios)
        span = num(lo) if abs(hi - lo) < 0.005 else f"{num(lo)}–{num(hi)}"
        if hi < 0.8:
            parts.append(f"Annotators' individual r with the model vary less within {label} groups than overall "
                         f"(SD ratio {span}): part of who agrees with the model follows {label}.")
        else:
            parts.append(f"Annotators' individual r with the model vary almost as much within {label} groups as "
                         f"over all annotators (SD ratio {span}): {label} explains little of who agrees with it.")
    return " ".join(parts)


def _groups_overview(summaries: list[AttributeFindings]) -> str:
    tested = [f for f in summaries if not f.skipped and (f.findings or f.smallest_p is not None)]
    if not tested:
        return "No group comparison could be tested in this run."
    with_findings = [f for f in tested if f.findings]
    if with_findings:
        head = ("Significant differences between groups (after Benjamini–Hochberg correction) for: "
                + ", ".join(attribute_label(f.attribute) for f in with_findings) + "; details below.")
    else:
        head = (f"No demographic group's alignment differs significantly from the other annotators' for any rater "
                f"({', '.join(attribute_label(f.attribute) for f in tested)}).")
    detectable = [f"{num(median(f.detectable))} ({attribute_label(f.attribute)})" for f in tested if f.detectable]
    if detectable:
        head += (" The smallest differences in r this run could detect are about " + ", ".join(detectable)
                 + (": absence of evidence here is not evidence of equal alignment." if not with_findings else "."))
    return head


# ------------------------------------------------------------------------------------------------ GAI


@section("association", "Do groups see the items their own way? (IRR, XRR, GAI)", ASSOCIATION_INTRO,
         needs=[MetricName.GROUP_GAI])
def association_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    order = {a: k for k, a in enumerate(attributes(idx))}
    gai_rows = sorted(idx.all(MetricName.GROUP_GAI),
                      key=lambda r: (order.get(str(r.details.get("attribute")), 99), r.slice))
    table, chart_rows, sig, undefined = [], [], [], 0
    smallest: float | None = None
    for row in gai_rows:
        attr = str(row.details.get("attribute", ""))
        irr = idx.one(MetricName.GROUP_IRR, row.slice)
        xrr = idx.one(MetricName.GROUP_XRR, row.slice)
        q = row.details.get("null_quantiles") or {}
        p_adj = row.p_adjusted
        if p_adj is not None:
            smallest = p_adj if smallest is None else min(smallest, p_adj)
        if row.value is None:
            undefined += 1
        if significant(p_adj):
            stated = str(row.details.get("direction") or "")
            if stated:
                sig.append(f"{attribute_label(attr)} {short_group(row.slice)} (GAI {num(row.value)}, {stated}: its "
                           f"members agree with each other {'more' if stated.startswith('higher') else 'less'} "
                           f"relative to their agreement with everyone else than random groups do; "
                           f"{p_phrase(p_adj, 'adjusted p')}, two-sided)")
            else:
                direction = "more" if (row.value or 0) > 1 else "less"
                sig.append(f"{attribute_label(attr)} {short_group(row.slice)} (GAI {num(row.value)}: its members "
                           f"agree with each other {direction} than with others; {p_phrase(p_adj, 'adjusted p')})")
        size = row.details.get("group_size")
        table.append([text(attribute_label(attr)), text(short_group(row.slice)), count_cell(size), value_cell(irr),
                      value_cell(xrr), value_cell(row), text(interval(q.get("0.025"), q.get("0.975"))),
                      p_cell(row.pvalue), p_cell(p_adj), mark_cell(p_adj)])
        chart_rows.append(plots.GaiRow(f"{attribute_label(attr)}: {short_group(row.slice)} ({count(size)})",
                                       row.value, q.get("0.025"), q.get("0.975"), significant(p_adj)))
    if ctx.add_plot("gai", plots.gai_chart(chart_rows)):
        sec.plots.append(PlotView("gai", "group association index per group against random groups"))
    if sig:
        sec.readings.append(f"{len(sig)} of {len(gai_rows)} groups see the items differently from random groups of "
                            f"the same size: " + "; ".join(sig) + ".")
    elif smallest is not None:
        sec.readings.append(f"No group's GAI differs from what random groups of the same size give (smallest "
                            f"adjusted p = {pvalue(smallest)} over {len(gai_rows)} groups): in this run no "
                            f"demographic group agrees with itself distinctly more than with everyone else.")
    defined = [r for r in gai_rows if r.value is not None]
    if defined:
        top = max(defined, key=lambda r: r.value or 0.0)
        sec.readings.append(f"Highest GAI: {short_group(top.slice)} ({attribute_label(str(top.details.get('attribute')))}"
                            f", {num(top.value)}; IRR {num(top.details.get('irr'))}, XRR "
                            f"{num(top.details.get('xrr'))}).")
    if undefined:
        sec.readings.append(f"{undefined} group{'s have' if undefined != 1 else ' has'} no defined GAI (too few "
                            f"ratings within the group, or no cross-group disagreement to compare with).")
    sec.tables.append(TableView("gai", "IRR, XRR and GAI per group",
                                ["attribute", "group", "annotators", "IRR", "XRR", "GAI", "random groups (95%)", "p",
                                 "p adj. (BH)", ""], table))
    return sec


# ------------------------------------------------------------------------------------------------ personas


@section("persona", "Can the model predict how groups differ? (personas)", PERSONA_INTRO,
         needs=[MetricName.PERSONA_GAP_PEARSON_R])
def persona_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    rows = []
    for row in idx.all(MetricName.PERSONA_GAP_PEARSON_R):
        label = rater_label(row.rater)
        if row.slice == "all" and row.value is None:
            sec.readings.append(f"{label}: not tested — {row.short_reason}.")
            continue
        acc = idx.one(MetricName.PERSONA_GAP_DIRECTION_ACCURACY, row.slice, *row.rater)
        pair = " vs ".join(short_group(p) for p in row.slice.split(" vs "))
        ad = acc.details if acc else {}
        rows.append([text(row.model), text(row.template), text(pair), value_cell(row), ci_cell(row), count_cell(row.n),
                     value_cell(acc, as_share=True), count_cell(acc.n if acc else None),
                     text(f"{count(ad.get('n_right'))} / {count(ad.get('n_wrong'))}"), p_cell(acc.pvalue if acc else None),
                     p_cell(ad.get("wilcoxon_pvalue"))])
        sec.readings.append(_persona_reading(label, pair, row, acc))
    sec.tables.append(TableView("persona", "Predicted against real group differences",
                                ["model", "template", "groups", "r (gaps)", "95% CI", "items", "direction right",
                                 "large-gap items", "right / wrong", "sign test p", "Wilcoxon p"], rows,
                                empty="no persona pair matched two annotator groups"))
    return sec


def _persona_reading(label: str, pair: str, row: MetricRecord, acc: MetricRecord | None) -> str:
    if row.value is None:
        head = f"{label}, {pair}: the gap correlation is undefined ({row.short_reason})."
    else:
        ci = interval(row.ci_low, row.ci_high)
        head = (f"{label}, {pair}: its predicted differences correlate with the real ones at r = {num(row.value)}"
                + (f" (95% CI {ci}, {count(row.n)} items)" if ci else f" ({count(row.n)} items)"))
        if row.ci_includes_zero:
            head += ": the interval includes zero, so there is no evidence it can predict how these groups differ."
        elif row.ci_low is not None and row.ci_low > 0:
            head += ": the interval is above zero, so its persona ratings carry some signal about the difference."
        else:
            head += "."
    if acc is None:
        return head
    thr = acc.details.get("gap_threshold")
    if acc.value is None:
        return head + f" No item has a real gap above {num(thr)} with a non-zero predicted gap, so direction is untested."
    right, wrong = acc.details.get("n_right"), acc.details.get("n_wrong")
    verdict = ("better than chance" if is_number(acc.pvalue) and acc.pvalue < 0.05
               else "not distinguishable from chance")
    return head + (f" On the {count(acc.n)} items where the groups' mean ratings differ by more than {num(thr)}, it "
                   f"points the right way on {count(right)} and the wrong way on {count(wrong)} ({share(acc.value)}; "
                   f"{p_phrase(acc.pvalue, 'sign test p')}): {verdict}.")
