//! The statistics behind a deploy verdict: is the canary window worse than the
//! baseline window, by more than chance and by more than we tolerate?
//!
//! Everything here is pure: it reads HDR histograms (values in microseconds,
//! as [`crate::metrics::window`] records them) and counts, and returns plain
//! numbers, so it is tested without a clock, a network or a store.
//!
//! * [`mann_whitney`]: Kayenta's rank test, computed from the histograms'
//!   buckets (O(buckets), not O(samples)), with tie correction.
//! * [`two_proportions`]: the pooled two-proportion z test for error and loss
//!   ratios.
//! * [`shift`] and [`quantile_secs`]: effect sizes in seconds.
//! * [`judge_latency`], [`judge_ratio`] and [`overall`]: the judgement layer,
//!   which combines significance with a [`Tolerance`] into an [`Outcome`].
//!
//! Why both a test and a tolerance: with thousands of samples a rank test finds
//! a 1 % slowdown "significant", and with a handful a 100 ms jump can be noise.
//! A deploy fails only when the change is both real (p < alpha) and large
//! (beyond the tolerance); either alone is marginal.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Histogram values are microseconds; verdicts speak seconds.
const US_PER_SEC: f64 = 1e6;

// ---------------------------------------------------------------------------
// Normal distribution
// ---------------------------------------------------------------------------

/// Complementary error function, W. J. Cody's rational Chebyshev
/// approximations (Math. Comp. 23, 1969; the SPECFUN `CALERF` routine).
/// Why not a short Numerical Recipes fit: p-values of 1e-9 and below must keep
/// their relative accuracy, and Cody's is accurate to about 1e-15 relative over
/// the whole double range (the tests check 1e-13 against reference values).
// The coefficients keep the digits Cody published.
#[allow(clippy::excessive_precision)]
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= 0.46875 {
        // erf by a rational function in x² (odd in x, so negative x too).
        const A: [f64; 5] = [
            3.1611237438705656e0,
            1.13864154151050156e2,
            3.77485237685302021e2,
            3.20937758913846947e3,
            1.85777706184603153e-1,
        ];
        const B: [f64; 4] = [
            2.36012909523441209e1,
            2.44024637934444173e2,
            1.28261652607737228e3,
            2.84423683343917062e3,
        ];
        let ysq = if y > 1.11e-16 { y * y } else { 0.0 };
        let mut num = A[4] * ysq;
        let mut den = ysq;
        for (a, b) in A.iter().zip(&B).take(3) {
            num = (num + a) * ysq;
            den = (den + b) * ysq;
        }
        return 1.0 - x * (num + A[3]) / (den + B[3]);
    }
    let result = if y <= 4.0 {
        const C: [f64; 9] = [
            5.64188496988670089e-1,
            8.88314979438837594e0,
            6.61191906371416295e1,
            2.98635138197400131e2,
            8.81952221241769090e2,
            1.71204761263407058e3,
            2.05107837782607147e3,
            1.23033935479799725e3,
            2.15311535474403846e-8,
        ];
        const D: [f64; 8] = [
            1.57449261107098347e1,
            1.17693950891312499e2,
            5.37181101862009858e2,
            1.62138957456669019e3,
            3.29079923573345963e3,
            4.36261909014324716e3,
            3.43936767414372164e3,
            1.23033935480374942e3,
        ];
        let mut num = C[8] * y;
        let mut den = y;
        for (c, d) in C.iter().zip(&D).take(7) {
            num = (num + c) * y;
            den = (den + d) * y;
        }
        (num + C[7]) / (den + D[7]) * exp_neg_sq(y)
    } else if y >= 26.543 {
        // Below the smallest positive double.
        0.0
    } else {
        const P: [f64; 6] = [
            3.05326634961232344e-1,
            3.60344899949804439e-1,
            1.25781726111229246e-1,
            1.60837851487422766e-2,
            6.58749161529837803e-4,
            1.63153871373020978e-2,
        ];
        const Q: [f64; 5] = [
            2.56852019228982242e0,
            1.87295284992346047e0,
            5.27905102951428412e-1,
            6.05183413124413191e-2,
            2.33520497626869185e-3,
        ];
        const FRAC_1_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI / 2.0;
        let ysq = 1.0 / (y * y);
        let mut num = P[5] * ysq;
        let mut den = ysq;
        for (p, q) in P.iter().zip(&Q).take(4) {
            num = (num + p) * ysq;
            den = (den + q) * ysq;
        }
        let r = ysq * (num + P[4]) / (den + Q[4]);
        (FRAC_1_SQRT_PI - r) / y * exp_neg_sq(y)
    };
    if x < 0.0 {
        2.0 - result
    } else {
        result
    }
}

/// exp(−y²) without the cancellation of squaring y in one go: y is split into
/// a part with few bits (a multiple of 1/16, squared exactly) and the rest.
fn exp_neg_sq(y: f64) -> f64 {
    let hi = (y * 16.0).trunc() / 16.0;
    let del = (y - hi) * (y + hi);
    (-hi * hi).exp() * (-del).exp()
}

/// Upper tail of the standard normal, P(Z > z). Why the tail and not the CDF:
/// 1 − Φ(z) loses every digit for z > 8, and verdicts quote tiny p-values.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

// ---------------------------------------------------------------------------
// Mann–Whitney U
// ---------------------------------------------------------------------------

/// The Mann–Whitney U test of a canary window against a baseline window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankTest {
    /// Samples in the baseline histogram.
    pub baseline_count: u64,
    /// Samples in the canary histogram.
    pub canary_count: u64,
    /// The canary's U: pairs (baseline, canary) where the canary is larger,
    /// plus half the pairs in the same bucket. Ranges over 0..=n_b × n_c.
    pub u: f64,
    /// (U − E[U]) / σ under the null, tie-corrected, without continuity
    /// correction; positive when the canary tends to be larger. 0 when every
    /// sample falls in one bucket (σ = 0).
    pub z: f64,
    /// One-sided p-value that the canary is stochastically larger (slower,
    /// more lag) than the baseline; continuity-corrected.
    pub p_worse: f64,
    /// Two-sided p-value that the two differ in either direction;
    /// continuity-corrected, at most 1.
    pub p_two_sided: f64,
    /// Common-language effect size: P(canary > baseline) + ½ P(tie), i.e.
    /// U / (n_b × n_c). 0.5 means no tendency either way.
    pub prob_superiority: f64,
}

/// Mann–Whitney U of `canary` against `baseline`, exactly from the recorded
/// buckets. Why from buckets: a day of snapshots holds millions of samples but
/// a few thousand buckets; walking both histograms' buckets in value order
/// gives the same statistic as ranking the samples, where samples sharing an
/// HDR bucket are ties (mid-ranks) — which is all the histogram can tell apart.
///
/// Both histograms should be built with the same bounds and significant digits
/// (as [`crate::metrics::window`] does); otherwise buckets are still merged by
/// their highest equivalent value, which is a valid but coarser ranking.
///
/// The p-values use the normal approximation with the tie-corrected variance
/// and a continuity correction (as SciPy's `mannwhitneyu` with
/// `method="asymptotic"`), which is accurate at the sample sizes a verdict
/// requires (tens of samples and up). Returns `None` when either is empty.
pub fn mann_whitney(baseline: &Histogram<u32>, canary: &Histogram<u32>) -> Option<RankTest> {
    if baseline.is_empty() || canary.is_empty() {
        return None;
    }
    let mut base = baseline
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
        .peekable();
    let mut can = canary
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
        .peekable();

    // Everything is an exact integer: twice U (halves from ties) and the tie
    // term Σ(t³ − t) in u128, so no count is large enough to lose precision.
    let mut n_b: u64 = 0;
    let mut n_c: u64 = 0;
    let mut twice_u: u128 = 0;
    let mut tie_sum: u128 = 0;
    let mut tie_sum_f: f64 = 0.0;
    let mut groups: u64 = 0;
    loop {
        let next_b = base.peek().map(|&(v, _)| v);
        let next_c = can.peek().map(|&(v, _)| v);
        let value = match (next_b, next_c) {
            (None, None) => break,
            (Some(b), None) => b,
            (None, Some(c)) => c,
            (Some(b), Some(c)) => b.min(c),
        };
        let a = if next_b == Some(value) {
            base.next().map_or(0, |(_, n)| n)
        } else {
            0
        };
        let b = if next_c == Some(value) {
            can.next().map_or(0, |(_, n)| n)
        } else {
            0
        };
        // Each canary sample here beats the n_b baseline samples below it and
        // ties with the a baseline samples in this bucket.
        twice_u += u128::from(b) * (2 * u128::from(n_b) + u128::from(a));
        // Σ(t³ − t) exactly while it fits (t < 2^42 samples per bucket), and
        // in f64 for the (theoretical) rest.
        let t = u128::from(a + b);
        tie_sum = tie_sum.saturating_add(t.saturating_mul(t).saturating_mul(t) - t);
        tie_sum_f += (t as f64).powi(3) - t as f64;
        groups += 1;
        n_b += a;
        n_c += b;
    }
    if n_b == 0 || n_c == 0 {
        return None;
    }

    let pairs = u128::from(n_b) * u128::from(n_c);
    let u = twice_u as f64 / 2.0;
    // U − E[U] = (2U − n_b·n_c) / 2, exact before the division.
    let dev = (twice_u as i128 - pairs as i128) as f64 / 2.0;
    let n = u128::from(n_b) + u128::from(n_c);
    // σ² = n_b·n_c / 12 · ((N + 1) − Σ(t³ − t) / (N(N − 1)))
    //    = n_b·n_c · (N³ − N − Σ(t³ − t)) / (12 N (N − 1)).
    // The bracket is an exact integer while N³ fits (then every t³ ≤ N³ did
    // too); it is 0 exactly when every sample shares one bucket.
    let var = match n.checked_mul(n).and_then(|n2| n2.checked_mul(n)) {
        Some(n3) => {
            let bracket = (n3 - n) - tie_sum;
            pairs as f64 * bracket as f64 / (12.0 * n as f64 * (n - 1) as f64)
        }
        _ => {
            let nf = n as f64;
            let v = pairs as f64 / 12.0 * ((nf + 1.0) - tie_sum_f / (nf * (nf - 1.0)));
            if groups == 1 {
                0.0
            } else {
                v.max(0.0)
            }
        }
    };
    let (z, p_worse, p_two_sided) = if var > 0.0 {
        let sd = var.sqrt();
        (
            dev / sd,
            normal_sf((dev - 0.5) / sd),
            (2.0 * normal_sf((dev.abs() - 0.5) / sd)).min(1.0),
        )
    } else {
        // One bucket holds everything: no evidence of any difference.
        (0.0, 1.0, 1.0)
    };
    Some(RankTest {
        baseline_count: n_b,
        canary_count: n_c,
        u,
        z,
        p_worse,
        p_two_sided,
        prob_superiority: u / pairs as f64,
    })
}

// ---------------------------------------------------------------------------
// Effect sizes
// ---------------------------------------------------------------------------

/// The value at quantile `q` in seconds, `None` for an empty histogram. Why
/// HDR's `value_at_quantile` (the bucket's highest equivalent value): it is how
/// the rest of the project reports quantiles, so a verdict's p95 matches the
/// dashboards' within the same bucket.
pub fn quantile_secs(hist: &Histogram<u32>, q: f64) -> Option<f64> {
    (!hist.is_empty()).then(|| hist.value_at_quantile(q) as f64 / US_PER_SEC)
}

/// How far the canary's quantile `q` moved from the baseline's, in seconds
/// (canary − baseline; positive is worse). Why a quantile shift beside the rank
/// test: the test says whether there is a difference, this says how large it
/// is, in the unit a tolerance is written in. The difference is taken in whole
/// microseconds first, so equal buckets give exactly 0.
pub fn shift(baseline: &Histogram<u32>, canary: &Histogram<u32>, q: f64) -> Option<f64> {
    if baseline.is_empty() || canary.is_empty() {
        return None;
    }
    let b = baseline.value_at_quantile(q) as i128;
    let c = canary.value_at_quantile(q) as i128;
    Some((c - b) as f64 / US_PER_SEC)
}

// ---------------------------------------------------------------------------
// Two proportions
// ---------------------------------------------------------------------------

/// The pooled two-proportion z test of a canary ratio against a baseline ratio
/// (errors per request, lost probes per probe).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProportionTest {
    /// bad_a / n_a.
    pub baseline_ratio: f64,
    /// bad_b / n_b.
    pub canary_ratio: f64,
    /// canary_ratio − baseline_ratio (positive is worse).
    pub difference: f64,
    /// The difference over its pooled standard error; 0 when that error is 0
    /// (no bad event on either side, or every event bad on both).
    pub z: f64,
    /// One-sided p-value that the canary's ratio is larger.
    pub p_worse: f64,
}

/// Pooled two-proportion z test: is `bad_b / n_b` (canary) larger than
/// `bad_a / n_a` (baseline)? Why pooled: under the null both windows share one
/// ratio, and pooling estimates it from both, which keeps the test's size right
/// when one side has few bad events. No continuity correction (the textbook
/// test). With no bad event on either side (or all bad on both) there is no
/// variance and no evidence: z = 0, p = 1. `None` when either n is 0 or a bad
/// count exceeds its n.
pub fn two_proportions(bad_a: u64, n_a: u64, bad_b: u64, n_b: u64) -> Option<ProportionTest> {
    if n_a == 0 || n_b == 0 || bad_a > n_a || bad_b > n_b {
        return None;
    }
    let (ra, rb) = (bad_a as f64 / n_a as f64, bad_b as f64 / n_b as f64);
    let pooled = (bad_a as f64 + bad_b as f64) / (n_a as f64 + n_b as f64);
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a as f64 + 1.0 / n_b as f64)).sqrt();
    let difference = rb - ra;
    let (z, p_worse) = if se > 0.0 {
        let z = difference / se;
        (z, normal_sf(z))
    } else {
        (0.0, 1.0)
    };
    Some(ProportionTest {
        baseline_ratio: ra,
        canary_ratio: rb,
        difference,
        z,
        p_worse,
    })
}

// ---------------------------------------------------------------------------
// Judgement
// ---------------------------------------------------------------------------

/// How much a signal may rise before it counts as a regression: "p95 may rise
/// by 10 % or 20 ms, whichever is larger" is `{ relative: 0.10, absolute:
/// 0.020 }`. Why both: a relative bound alone is too tight for a fast endpoint
/// (10 % of 2 ms is jitter) and an absolute one too loose for a slow one.
/// `absolute` is in the signal's unit: seconds for latency and lag, a ratio
/// (0.005 = half a percentage point) for errors and loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Allowed rise as a fraction of the baseline value.
    pub relative: f64,
    /// Allowed rise in the signal's unit.
    pub absolute: f64,
}

impl Tolerance {
    /// The rise allowed above `baseline`: max(relative × baseline, absolute).
    pub fn allowed(&self, baseline: f64) -> f64 {
        (self.relative * baseline).max(self.absolute)
    }
}

/// A verdict, for one signal or overall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No significant, intolerable regression.
    Pass,
    /// Either significantly worse but within tolerance, or beyond tolerance
    /// but not significantly so: worth a look, not a rollback.
    Marginal,
    /// Significantly worse and beyond tolerance.
    Fail,
    /// Too few samples on either side to judge.
    Inconclusive,
}

impl Outcome {
    /// The lowercase name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Marginal => "marginal",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one signal, with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalVerdict {
    pub outcome: Outcome,
    /// One human sentence with the numbers, e.g. "p95 rose 52.1 ms (48.0 →
    /// 100.1 ms), over the 20.0 ms tolerance; Mann–Whitney p=1.0e-9".
    pub reason: String,
    /// Samples (latency, lag) or trials (requests, probes) in the baseline.
    pub baseline_count: u64,
    /// Samples or trials in the canary window.
    pub canary_count: u64,
    /// One-sided p-value that the canary is worse; `None` without data.
    pub p_value: Option<f64>,
    /// The rise the tolerance allowed above the baseline, in the signal's
    /// unit (seconds, or a ratio); `None` without baseline data.
    pub allowed: Option<f64>,
    /// Signal-specific numbers, flattened into this object with a `kind`.
    #[serde(flatten)]
    pub detail: Detail,
}

/// The numbers specific to a kind of signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Detail {
    /// A distribution (request latency, projection lag), in seconds.
    Distribution {
        baseline_p50: Option<f64>,
        baseline_p95: Option<f64>,
        canary_p50: Option<f64>,
        canary_p95: Option<f64>,
        /// canary_p50 − baseline_p50.
        shift_p50: Option<f64>,
        /// canary_p95 − baseline_p95; compared with the tolerance.
        shift_p95: Option<f64>,
        /// Mann–Whitney's P(canary > baseline) + ½ P(tie).
        prob_superiority: Option<f64>,
    },
    /// A ratio of bad events (errors per request, losses per probe).
    Ratio {
        baseline_bad: u64,
        canary_bad: u64,
        baseline_ratio: Option<f64>,
        canary_ratio: Option<f64>,
        /// canary_ratio − baseline_ratio; compared with the tolerance.
        difference: Option<f64>,
    },
}

/// The decision rule shared by every signal. Why this order: a regression
/// must be both real and large to fail a deploy; being only one of the two is
/// marginal (Kayenta's middle band), everything else passes.
fn decide(p: f64, beyond: bool, alpha: f64, marginal_alpha: f64) -> Outcome {
    if p < alpha && beyond {
        Outcome::Fail
    } else if beyond || p < marginal_alpha {
        Outcome::Marginal
    } else {
        Outcome::Pass
    }
}

/// A p-value as a reader wants it: three decimals, or scientific when tiny.
fn fmt_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// Seconds as milliseconds: one decimal, three below a millisecond (a local
/// target answers in microseconds).
fn fmt_ms(secs: f64) -> String {
    let ms = secs * 1e3;
    if ms.abs() >= 1.0 || ms == 0.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.3}")
    }
}

/// A ratio as a percentage with two decimals.
fn fmt_pct(ratio: f64) -> String {
    format!("{:.2} %", ratio * 100.0)
}

/// "rose X", "fell X" or "unchanged" for a signed change.
fn movement(change: f64, magnitude: impl Fn(f64) -> String) -> String {
    if change > 0.0 {
        format!("rose {}", magnitude(change))
    } else if change < 0.0 {
        format!("fell {}", magnitude(-change))
    } else {
        "unchanged".to_string()
    }
}

/// The clause after the numbers, one per branch of [`decide`].
fn verdict_clause(outcome: Outcome, beyond: bool, tolerance: &str, test: &str) -> String {
    match (outcome, beyond) {
        (Outcome::Fail, _) => format!("over the {tolerance} tolerance; {test}"),
        (Outcome::Marginal, true) => {
            format!("over the {tolerance} tolerance, but not significantly ({test})")
        }
        (Outcome::Marginal, false) => format!(
            "within the {tolerance} tolerance, but the canary is significantly worse ({test})"
        ),
        _ => format!("within the {tolerance} tolerance; {test}"),
    }
}

/// Why `Inconclusive`, with the counts.
fn too_few(baseline: u64, canary: u64, min_samples: u64) -> String {
    format!(
        "too few samples: baseline {baseline}, canary {canary}, at least {} each needed",
        min_samples.max(1)
    )
}

/// Judges a distribution signal (an endpoint's latency, a projection's lag):
/// the rank test decides whether the canary is worse, the p95 shift against
/// `tol_p95` whether it is worse by too much. Rule:
///
/// * `Inconclusive` when either side has fewer than `min_samples` (or none);
/// * `Fail` when Mann–Whitney's one-sided p < `alpha` and the p95 shift exceeds
///   the tolerance (strictly);
/// * `Marginal` when p < `marginal_alpha` within tolerance, or beyond tolerance
///   without p < `alpha`;
/// * `Pass` otherwise.
///
/// Why p95 for the tolerance: deploy regressions show first in the tail, and it
/// is the quantile the SLOs are written for.
pub fn judge_latency(
    baseline: &Histogram<u32>,
    canary: &Histogram<u32>,
    tol_p95: Tolerance,
    alpha: f64,
    marginal_alpha: f64,
    min_samples: u64,
) -> SignalVerdict {
    let (nb, nc) = (baseline.len(), canary.len());
    let test = mann_whitney(baseline, canary);
    let baseline_p95 = quantile_secs(baseline, 0.95);
    let canary_p95 = quantile_secs(canary, 0.95);
    let shift_p95 = shift(baseline, canary, 0.95);
    let allowed = baseline_p95.map(|b| tol_p95.allowed(b));
    let detail = Detail::Distribution {
        baseline_p50: quantile_secs(baseline, 0.5),
        baseline_p95,
        canary_p50: quantile_secs(canary, 0.5),
        canary_p95,
        shift_p50: shift(baseline, canary, 0.5),
        shift_p95,
        prob_superiority: test.map(|t| t.prob_superiority),
    };
    let p_value = test.map(|t| t.p_worse);
    let judged = match (test, baseline_p95, canary_p95, shift_p95, allowed) {
        (Some(t), Some(b95), Some(c95), Some(s95), Some(allowed))
            if nb >= min_samples && nc >= min_samples =>
        {
            Some((t, b95, c95, s95, allowed))
        }
        _ => None,
    };
    let Some((t, b95, c95, s95, allowed_s)) = judged else {
        return SignalVerdict {
            outcome: Outcome::Inconclusive,
            reason: too_few(nb, nc, min_samples),
            baseline_count: nb,
            canary_count: nc,
            p_value,
            allowed,
            detail,
        };
    };
    let beyond = s95 > allowed_s;
    let outcome = decide(t.p_worse, beyond, alpha, marginal_alpha);
    let mut reason = format!(
        "p95 {} ({} → {} ms), ",
        movement(s95, |s| format!("{} ms", fmt_ms(s))),
        fmt_ms(b95),
        fmt_ms(c95)
    );
    reason.push_str(&verdict_clause(
        outcome,
        beyond,
        &format!("{} ms", fmt_ms(allowed_s)),
        &format!("Mann–Whitney p={}", fmt_p(t.p_worse)),
    ));
    SignalVerdict {
        outcome,
        reason,
        baseline_count: nb,
        canary_count: nc,
        p_value,
        allowed,
        detail,
    }
}

/// Judges a ratio signal (errors per request, lost probes per probe) with
/// [`two_proportions`] and a tolerance on the ratio's rise (absolute in ratio
/// units, e.g. 0.005; relative to the baseline ratio). Same rule as
/// [`judge_latency`], with `n_a` and `n_b` as the sample counts.
#[allow(clippy::too_many_arguments)] // Mirrors two_proportions' counts plus judge_latency's knobs.
pub fn judge_ratio(
    bad_a: u64,
    n_a: u64,
    bad_b: u64,
    n_b: u64,
    tol: Tolerance,
    alpha: f64,
    marginal_alpha: f64,
    min_samples: u64,
) -> SignalVerdict {
    let test = two_proportions(bad_a, n_a, bad_b, n_b);
    let allowed = test.map(|t| tol.allowed(t.baseline_ratio));
    let detail = Detail::Ratio {
        baseline_bad: bad_a,
        canary_bad: bad_b,
        baseline_ratio: test.map(|t| t.baseline_ratio),
        canary_ratio: test.map(|t| t.canary_ratio),
        difference: test.map(|t| t.difference),
    };
    let p_value = test.map(|t| t.p_worse);
    let judged = match (test, allowed) {
        (Some(t), Some(a)) if n_a >= min_samples && n_b >= min_samples => Some((t, a)),
        _ => None,
    };
    let Some((t, allowed_r)) = judged else {
        let mut reason = too_few(n_a, n_b, min_samples);
        if bad_a > n_a || bad_b > n_b {
            reason = format!("invalid counts: {bad_a} bad of {n_a}, {bad_b} bad of {n_b}");
        }
        return SignalVerdict {
            outcome: Outcome::Inconclusive,
            reason,
            baseline_count: n_a,
            canary_count: n_b,
            p_value,
            allowed,
            detail,
        };
    };
    let beyond = t.difference > allowed_r;
    let outcome = decide(t.p_worse, beyond, alpha, marginal_alpha);
    let mut reason = format!(
        "ratio {} ({} → {}), ",
        movement(t.difference, |d| format!("{:.2} pp", d * 100.0)),
        fmt_pct(t.baseline_ratio),
        fmt_pct(t.canary_ratio)
    );
    reason.push_str(&verdict_clause(
        outcome,
        beyond,
        &format!("{:.2} pp", allowed_r * 100.0),
        &format!("two-proportion p={}", fmt_p(t.p_worse)),
    ));
    SignalVerdict {
        outcome,
        reason,
        baseline_count: n_a,
        canary_count: n_b,
        p_value,
        allowed,
        detail,
    }
}

/// The overall verdict from the signals' outcomes: any `Fail` fails; else any
/// `Marginal` is marginal; else `Inconclusive` when every signal is (or there
/// are none); else `Pass`. Why an inconclusive signal does not block a pass:
/// a quiet endpoint or a projection without probes has no data in either
/// window, and that says nothing about the deploy; the signals that do have
/// data decide, and each inconclusive one still shows its reason.
pub fn overall(signals: &[Outcome]) -> Outcome {
    if signals.contains(&Outcome::Fail) {
        Outcome::Fail
    } else if signals.contains(&Outcome::Marginal) {
        Outcome::Marginal
    } else if signals.iter().all(|&o| o == Outcome::Inconclusive) {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    }
}
