"""The metric catalogue: every metric name the analysis emits, with what a reader needs to show it.

``MetricName`` is the one list of names. Each member is the string stored in ``Metric.name`` (a ``StrEnum``:
``MetricName.PEARSON_R_VS_MEAN == "pearson_r_vs_mean"``) and carries its display metadata: a label, the
scale its values are on, whether higher or lower is better (or neither: a description, not a score), and the
report section it belongs to. The suite checks each record's name against it (``MetricRecord``), the report
and the HTTP API look names up in it, and the CLI prints its labels: renaming a metric is one edit here.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    HIGHER = "higher is better"
    LOWER = "lower is better"
    NEITHER = "neither (a description)"


class Scale(StrEnum):
    CORRELATION = "-1 to 1"
    COEFFICIENT = "agreement coefficient, at most 1 (0 = chance)"
    DELTA = "change of a coefficient"
    SHARE = "0 to 1"
    PERCENTILE = "0 to 100"
    RATING = "the dataset's rating scale"
    RATING_DIFFERENCE = "difference on the dataset's rating scale"
    DIVERGENCE = "0 (identical) and up"
    CHI2 = "chi-squared statistic"
    COUNT = "count"


class Section(StrEnum):
    BASELINE = "human baseline"
    ALIGNMENT = "alignment with the crowd"
    AGREEMENT = "agreement coefficients"
    CLASSIFICATION = "labels against a reference"
    DISTRIBUTION = "label distributions"
    COMPARISON = "comparisons of raters"
    GROUPS = "annotator groups"
    PERSONAS = "personas"
    FAILURES = "failures and refusals"
    CONSISTENCY = "consistency"
    PREVALENCE = "prevalence"
    SUBJECTS = "subject models"
    JUDGES = "judges of answers"


H, L, N = Direction.HIGHER, Direction.LOWER, Direction.NEITHER


class MetricName(StrEnum):
    """A metric's stored name, with ``label``, ``scale``, ``direction`` and ``section``."""

    label: str
    scale: Scale
    direction: Direction
    section: Section

    def __new__(cls, value: str, label: str, scale: Scale, direction: Direction,
                section: Section) -> MetricName:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label, member.scale, member.direction, member.section = label, scale, direction, section
        return member

    # human baseline
    N_HUMAN_RATINGS = (
        "n_human_ratings", "human ratings",
        Scale.COUNT, N, Section.BASELINE)
    ANNOTATOR_LOO_R_MEDIAN = (
        "annotator_loo_r_median", "median annotator r vs the others (leave one out)",
        Scale.CORRELATION, H, Section.BASELINE)
    ANNOTATOR_FULL_MEAN_R_MEDIAN = (
        "annotator_full_mean_r_median", "median annotator r vs the crowd's mean",
        Scale.CORRELATION, H, Section.BASELINE)
    DATASET_ANNOTATOR_LOO_R_MEDIAN = (
        "dataset_annotator_loo_r_median", "median annotator r vs the others, whole dataset",
        Scale.CORRELATION, H, Section.BASELINE)
    DATASET_KRIPPENDORFF_ALPHA_NOMINAL = (
        "dataset_krippendorff_alpha_nominal", "Krippendorff's alpha (nominal), whole dataset",
        Scale.COEFFICIENT, H, Section.BASELINE)
    DATASET_KRIPPENDORFF_ALPHA_ORDINAL = (
        "dataset_krippendorff_alpha_ordinal", "Krippendorff's alpha (ordinal), whole dataset",
        Scale.COEFFICIENT, H, Section.BASELINE)
    DATASET_KRIPPENDORFF_ALPHA_INTERVAL = (
        "dataset_krippendorff_alpha_interval", "Krippendorff's alpha (interval), whole dataset",
        Scale.COEFFICIENT, H, Section.BASELINE)
    # alignment with the crowd's mean rating
    PEARSON_R_VS_MEAN = (
        "pearson_r_vs_mean", "Pearson r vs the crowd's mean",
        Scale.CORRELATION, H, Section.ALIGNMENT)
    SPEARMAN_R_VS_MEAN = (
        "spearman_r_vs_mean", "Spearman rho vs the crowd's mean",
        Scale.CORRELATION, H, Section.ALIGNMENT)
    KENDALL_TAU_VS_MEAN = (
        "kendall_tau_vs_mean", "Kendall tau vs the crowd's mean",
        Scale.CORRELATION, H, Section.ALIGNMENT)
    PEARSON_R_VS_MEAN_TWO_WAY = (
        "pearson_r_vs_mean_two_way", "Pearson r vs the crowd's mean (two-way bootstrap)",
        Scale.CORRELATION, H, Section.ALIGNMENT)
    SPEARMAN_R_VS_MEAN_TWO_WAY = (
        "spearman_r_vs_mean_two_way", "Spearman rho vs the crowd's mean (two-way bootstrap)",
        Scale.CORRELATION, H, Section.ALIGNMENT)
    KENDALL_TAU_VS_MEAN_TWO_WAY = (
        "kendall_tau_vs_mean_two_way", "Kendall tau vs the crowd's mean (two-way bootstrap)",
        Scale.CORRELATION, H, Section.ALIGNMENT)
    LLM_PERCENTILE_AMONG_ANNOTATORS = (
        "llm_percentile_among_annotators", "the LLM's percentile among annotators",
        Scale.PERCENTILE, H, Section.ALIGNMENT)
    # agreement coefficients
    KRIPPENDORFF_ALPHA_NOMINAL = (
        "krippendorff_alpha_nominal", "Krippendorff's alpha (nominal)",
        Scale.COEFFICIENT, H, Section.AGREEMENT)
    KRIPPENDORFF_ALPHA_ORDINAL = (
        "krippendorff_alpha_ordinal", "Krippendorff's alpha (ordinal)",
        Scale.COEFFICIENT, H, Section.AGREEMENT)
    KRIPPENDORFF_ALPHA_INTERVAL = (
        "krippendorff_alpha_interval", "Krippendorff's alpha (interval)",
        Scale.COEFFICIENT, H, Section.AGREEMENT)
    KRIPPENDORFF_DELTA_ALPHA_NOMINAL = (
        "krippendorff_delta_alpha_nominal", "change in alpha (nominal) when the LLM joins",
        Scale.DELTA, H, Section.AGREEMENT)
    KRIPPENDORFF_DELTA_ALPHA_ORDINAL = (
        "krippendorff_delta_alpha_ordinal", "change in alpha (ordinal) when the LLM joins",
        Scale.DELTA, H, Section.AGREEMENT)
    KRIPPENDORFF_DELTA_ALPHA_INTERVAL = (
        "krippendorff_delta_alpha_interval", "change in alpha (interval) when the LLM joins",
        Scale.DELTA, H, Section.AGREEMENT)
    FLEISS_KAPPA = (
        "fleiss_kappa", "Fleiss' kappa",
        Scale.COEFFICIENT, H, Section.AGREEMENT)
    COHEN_KAPPA_VS_MAJORITY = (
        "cohen_kappa_vs_majority", "Cohen's kappa vs the majority label",
        Scale.COEFFICIENT, H, Section.AGREEMENT)
    COHEN_KAPPA_LINEAR_VS_MAJORITY = (
        "cohen_kappa_linear_vs_majority", "Cohen's kappa (linear weights) vs the majority label",
        Scale.COEFFICIENT, H, Section.AGREEMENT)
    # labels against a reference (the majority label, the expert label)
    ACCURACY_VS_MAJORITY = (
        "accuracy_vs_majority", "accuracy vs the majority label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    PRECISION_VS_MAJORITY = (
        "precision_vs_majority", "precision vs the majority label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    RECALL_VS_MAJORITY = (
        "recall_vs_majority", "recall vs the majority label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    F1_VS_MAJORITY = (
        "f1_vs_majority", "F1 vs the majority label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    COHEN_KAPPA_BINARY_VS_MAJORITY = (
        "cohen_kappa_binary_vs_majority", "Cohen's kappa (binary) vs the majority",
        Scale.COEFFICIENT, H, Section.CLASSIFICATION)
    ACCURACY_VS_EXPERT = (
        "accuracy_vs_expert", "accuracy vs the expert label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    PRECISION_VS_EXPERT = (
        "precision_vs_expert", "precision vs the expert label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    RECALL_VS_EXPERT = (
        "recall_vs_expert", "recall vs the expert label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    F1_VS_EXPERT = (
        "f1_vs_expert", "F1 vs the expert label",
        Scale.SHARE, H, Section.CLASSIFICATION)
    COHEN_KAPPA_BINARY_VS_EXPERT = (
        "cohen_kappa_binary_vs_expert", "Cohen's kappa (binary) vs the expert",
        Scale.COEFFICIENT, H, Section.CLASSIFICATION)
    MULTICLASS_ACCURACY_VS_MAJORITY = (
        "multiclass_accuracy_vs_majority", "accuracy over all labels vs the majority",
        Scale.SHARE, H, Section.CLASSIFICATION)
    # label distributions
    JSD_MEAN = (
        "jsd_mean", "mean Jensen-Shannon divergence from the crowd's labels",
        Scale.SHARE, L, Section.DISTRIBUTION)
    SOFT_LABEL_CROSS_ENTROPY = (
        "soft_label_cross_entropy", "cross-entropy against the crowd's label shares",
        Scale.DIVERGENCE, L, Section.DISTRIBUTION)
    SOFT_LABEL_MANHATTAN = (
        "soft_label_manhattan", "Manhattan distance from the crowd's label shares",
        Scale.DIVERGENCE, L, Section.DISTRIBUTION)
    # comparisons of raters
    PAIRED_DIFFERENCE_PEARSON_R = (
        "paired_difference_pearson_r", "difference of two raters' Pearson r",
        Scale.CORRELATION, N, Section.COMPARISON)
    PAIRED_DIFFERENCE_COHEN_KAPPA = (
        "paired_difference_cohen_kappa", "difference of two raters' Cohen's kappa",
        Scale.DELTA, N, Section.COMPARISON)
    ALT_TEST_WINNING_RATE = (
        "alt_test_winning_rate", "alternative annotator test: winning rate",
        Scale.SHARE, H, Section.COMPARISON)
    ALT_TEST_ADVANTAGE_PROBABILITY = (
        "alt_test_advantage_probability", "alternative annotator test: advantage probability",
        Scale.SHARE, H, Section.COMPARISON)
    # annotator groups
    GROUP_PEARSON_R = (
        "group_pearson_r", "Pearson r vs the group's mean",
        Scale.CORRELATION, H, Section.GROUPS)
    GROUP_R_GAP = (
        "group_r_gap", "gap between groups' r",
        Scale.CORRELATION, L, Section.GROUPS)
    MIN_DETECTABLE_R_DIFFERENCE = (
        "min_detectable_r_difference", "smallest detectable difference of r",
        Scale.CORRELATION, L, Section.GROUPS)
    IDIOSYNCRATIC_SD_WITHIN_GROUPS = (
        "idiosyncratic_sd_within_groups", "spread of annotators' r within groups",
        Scale.CORRELATION, N, Section.GROUPS)
    GROUP_IRR = (
        "group_irr", "agreement within the group (IRR)",
        Scale.COEFFICIENT, N, Section.GROUPS)
    GROUP_XRR = (
        "group_xrr", "agreement across groups (XRR)",
        Scale.COEFFICIENT, N, Section.GROUPS)
    GROUP_GAI = (
        "group_gai", "group association index (GAI)",
        Scale.DIVERGENCE, N, Section.GROUPS)
    GROUP_MEAN_RATING = (
        "group_mean_rating", "the group's mean rating",
        Scale.RATING, N, Section.GROUPS)
    GROUP_MEAN_DIFFERENCE = (
        "group_mean_difference", "item-matched difference of two groups' means",
        Scale.RATING_DIFFERENCE, N, Section.GROUPS)
    GROUP_NOT_TESTED = (
        "group_not_tested", "group too small to test",
        Scale.COUNT, N, Section.GROUPS)
    GROUP_UNKNOWN_ANNOTATORS = (
        "group_unknown_annotators", "annotators with an unknown value",
        Scale.COUNT, N, Section.GROUPS)
    # personas
    PERSONA_GAP_PEARSON_R = (
        "persona_gap_pearson_r", "r between persona gaps and true group gaps",
        Scale.CORRELATION, H, Section.PERSONAS)
    PERSONA_GAP_DIRECTION_ACCURACY = (
        "persona_gap_direction_accuracy", "share of group gaps with the right sign",
        Scale.SHARE, H, Section.PERSONAS)
    PERSONA_DRIFT_MEAN_ABS = (
        "persona_drift_mean_abs", "mean absolute drift from the plain rating",
        Scale.RATING_DIFFERENCE, N, Section.PERSONAS)
    PERSONA_WITHIN_HUMAN_BOUNDS = (
        "persona_within_human_bounds", "share of ratings within the human groups' range",
        Scale.SHARE, H, Section.PERSONAS)
    # failures and refusals
    FAILURE_RATE = (
        "failure_rate", "failure rate",
        Scale.SHARE, L, Section.FAILURES)
    REFUSAL_RATE = (
        "refusal_rate", "refusal rate",
        Scale.SHARE, L, Section.FAILURES)
    FAILURE_BIAS_CHI2 = (
        "failure_bias_chi2", "failures by item metadata (chi-squared)",
        Scale.CHI2, L, Section.FAILURES)
    REFUSAL_BIAS_CHI2 = (
        "refusal_bias_chi2", "refusals by item metadata (chi-squared)",
        Scale.CHI2, L, Section.FAILURES)
    # consistency
    TEST_RETEST_R = (
        "test_retest_r", "test-retest r between samples",
        Scale.CORRELATION, H, Section.CONSISTENCY)
    LABEL_FLIP_RATE = (
        "label_flip_rate", "label flip rate between samples",
        Scale.SHARE, L, Section.CONSISTENCY)
    FORMAT_CONSISTENCY_CS = (
        "format_consistency_cs", "format consistency (CS)",
        Scale.SHARE, H, Section.CONSISTENCY)
    FORMAT_CONSISTENCY_CSS = (
        "format_consistency_css", "format consistency, safe answers (CSS)",
        Scale.SHARE, H, Section.CONSISTENCY)
    POSITION_BIAS_FLIP_RATE = (
        "position_bias_flip_rate", "flips when the options swap places",
        Scale.SHARE, L, Section.CONSISTENCY)
    # prevalence on items people did not rate
    PREVALENCE_RAW = (
        "prevalence_raw", "prevalence as the judge labels it",
        Scale.SHARE, N, Section.PREVALENCE)
    PREVALENCE_CORRECTED = (
        "prevalence_corrected", "prevalence corrected for the judge's errors",
        Scale.SHARE, N, Section.PREVALENCE)
    # subject models
    SUBJECT_RANKING_KENDALL_TAU = (
        "subject_ranking_kendall_tau", "Kendall tau of subject rankings vs people",
        Scale.CORRELATION, H, Section.SUBJECTS)
    SUBJECT_MEAN_HARM = (
        "subject_mean_harm", "the subject's mean rated harm",
        Scale.RATING, N, Section.SUBJECTS)
    FINE_CS = (
        "fine_cs", "FINE consistency (CS)",
        Scale.SHARE, H, Section.SUBJECTS)
    FINE_CSS = (
        "fine_css", "FINE consistency, safe answers (CSS)",
        Scale.SHARE, H, Section.SUBJECTS)
    # judges of answers
    JUDGE_SUBJECT_MEAN = (
        "judge_subject_mean", "a subject's score by a judge or by people (mean rating, win share or rank)",
        Scale.RATING, N, Section.JUDGES)
    JUDGE_SUBJECT_PAIRED_DIFF = (
        "judge_subject_paired_diff", "paired difference between two subjects",
        Scale.RATING_DIFFERENCE, N, Section.JUDGES)
    JUDGE_PAIR_KENDALL_TAU = (
        "judge_pair_kendall_tau", "Kendall tau between two judges' rankings",
        Scale.CORRELATION, H, Section.JUDGES)
    JUDGES_KENDALL_W = (
        "judges_kendall_w", "Kendall's W across judges",
        Scale.SHARE, H, Section.JUDGES)
    JUDGE_POSITION_FLIP_SHARE = (
        "judge_position_flip_share", "share of pairs whose verdict flips with the order shown",
        Scale.SHARE, L, Section.JUDGES)
    JUDGE_COMPARISON_PARSED = (
        "judge_comparison_parsed", "share of a comparison judge's verdicts that parsed",
        Scale.SHARE, H, Section.JUDGES)
    JUDGE_HUMAN_ALPHA = (
        "judge_human_alpha", "Krippendorff's alpha between a judge and people's mean rating",
        Scale.COEFFICIENT, H, Section.JUDGES)

def find_metric(name: str) -> MetricName | None:
    """The catalogue entry of ``name``, or None (a stored name of an older version, say)."""
    return next((member for member in MetricName if member.value == name), None)


def metric_name(name: str) -> MetricName:
    """The catalogue entry of ``name``; an unknown name is a ValueError naming the catalogue."""
    found = find_metric(name)
    if found is None:
        raise ValueError(f"metric {name!r} is not in the metric catalogue (analysis/catalogue.py)")
    return found

