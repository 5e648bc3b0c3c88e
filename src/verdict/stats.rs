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
    /// more lag) than the baseline; continuity-corrected. Underflows to 0
    /// beyond z ≈ 37.
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
/// marginal (Kayenta's middle band), everything else passes. `noticeable`:
/// the change is past half the tolerance. A significant change smaller than
/// that is no news: with tens of thousands of samples a window, a 1 % drift
/// of the time of day is significant, and would make every calm verdict
/// marginal.
fn decide(p: f64, beyond: bool, noticeable: bool, alpha: f64, marginal_alpha: f64) -> Outcome {
    if p < alpha && beyond {
        Outcome::Fail
    } else if beyond || (p < marginal_alpha && noticeable) {
        Outcome::Marginal
    } else {
        Outcome::Pass
    }
}

/// A p-value as a reader wants it, with its relation: "p=0.432" with three
/// decimals, "p=1.0e-9" when tiny, and "p<1e-300" once the normal tail has
/// underflowed to 0 (z beyond about 37).
fn fmt_p(p: f64) -> String {
    if p >= 0.001 {
        format!("p={p:.3}")
    } else if p >= 1e-300 {
        format!("p={p:.1e}")
    } else {
        "p<1e-300".to_string()
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
/// * `Marginal` when p < `marginal_alpha` with a shift past half the
///   tolerance, or beyond tolerance without p < `alpha`;
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
    let outcome = decide(
        t.p_worse,
        beyond,
        s95 > allowed_s / 2.0,
        alpha,
        marginal_alpha,
    );
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
        &format!("Mann–Whitney {}", fmt_p(t.p_worse)),
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
    let outcome = decide(
        t.p_worse,
        beyond,
        t.difference > allowed_r / 2.0,
        alpha,
        marginal_alpha,
    );
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
        &format!("two-proportion {}", fmt_p(t.p_worse)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::window::new_hist;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A histogram as the project records latency, holding `values` (µs).
    fn hist(values: &[u64]) -> Histogram<u32> {
        let mut h = new_hist();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    /// A lognormal-ish latency in µs: median `median_us`, log-sd `sigma`
    /// (Box–Muller, so only `rand` is needed).
    fn lognormal_us(rng: &mut StdRng, median_us: f64, sigma: f64) -> u64 {
        let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median_us * (sigma * z).exp()).round().max(1.0) as u64
    }

    /// `n` latencies with a 40 ms median, plus `offset_us`, in a histogram.
    fn latency_hist(rng: &mut StdRng, n: usize, offset_us: u64) -> Histogram<u32> {
        let mut h = new_hist();
        for _ in 0..n {
            h.saturating_record(lognormal_us(rng, 40_000.0, 0.35) + offset_us);
        }
        h
    }

    fn close(actual: f64, expected: f64, rel: f64) -> bool {
        (actual - expected).abs() <= rel * expected.abs()
    }

    #[test]
    fn erfc_matches_reference_values() {
        // Reference values from CPython's math.erfc (correctly rounded to a
        // few ulp), across all three of Cody's intervals and both signs.
        let cases = [
            (-3.0, 1.9999779095030015),
            (-1.0, 1.842700792949715),
            (-0.3, 1.3286267594591274),
            (0.0, 1.0),
            (1e-9, 0.9999999988716208),
            (0.1, 0.8875370839817152),
            (0.46875, 0.507386526782062),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (3.5, 7.430983723414128e-7),
            (4.0, 1.541725790028002e-8),
            (4.5, 1.9661604415428873e-10),
            (6.0, 2.1519736712498916e-17),
            (10.0, 2.088487583762545e-45),
            (26.0, 5.663192408856143e-296),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                close(got, want, 1e-13),
                "erfc({x}) = {got:e}, want {want:e}"
            );
        }
        assert_eq!(erfc(30.0), 0.0);
        assert_eq!(erfc(-30.0), 2.0);
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert!(erfc(f64::NAN).is_nan());
    }

    #[test]
    fn normal_sf_matches_reference_values() {
        let cases = [
            (0.0, 0.5),
            (1.0, 0.15865525393145707),
            (1.6448536269514722, 0.05),
            (2.326347874040841, 0.01),
            (3.0, 0.0013498980316300957),
            (6.0, 9.865876450377012e-10),
            (-2.0, 0.9772498680518208),
        ];
        for (z, want) in cases {
            let got = normal_sf(z);
            assert!(close(got, want, 1e-13), "sf({z}) = {got:e}, want {want:e}");
        }
    }

    // Hand example, with ties. Baseline 1 2 2 3 5, canary 2 3 4 6 6 7 (µs;
    // below 256 µs every value is its own HDR bucket).
    //
    // Pooled and sorted: 1 | 2 2 2 | 3 3 | 4 | 5 | 6 6 | 7, mid-ranks
    // 1 | 3 3 3 | 5.5 5.5 | 7 | 8 | 9.5 9.5 | 11. The canary's rank sum is
    // 3 + 5.5 + 7 + 9.5 + 9.5 + 11 = 45.5, so U = 45.5 − 6·7/2 = 24.5 (pairwise:
    // 1 + ½·2, 3 + ½·1, 4, 5, 5, 5 = 24.5). E[U] = 5·6/2 = 15. Ties of sizes 3,
    // 2, 2 give Σ(t³ − t) = 24 + 6 + 6 = 36, so
    // σ² = 30/12 · (12 − 36/110) = 29.181818…, σ = 5.402019824…,
    // z = 9.5/σ = 1.758601469…, one-sided p = sf((9.5 − 0.5)/σ) = 0.047852376…,
    // two-sided 2·that = 0.095704751…, P(superiority) = 24.5/30.
    const HAND_BASELINE: [u64; 5] = [1, 2, 2, 3, 5];
    const HAND_CANARY: [u64; 6] = [2, 3, 4, 6, 6, 7];

    #[test]
    fn mann_whitney_matches_the_hand_computed_example() {
        let t = mann_whitney(&hist(&HAND_BASELINE), &hist(&HAND_CANARY)).unwrap();
        assert_eq!((t.baseline_count, t.canary_count), (5, 6));
        assert_eq!(t.u, 24.5);
        assert!(close(t.z, 1.7586014692720624, 1e-12), "{t:?}");
        assert!(close(t.p_worse, 0.047852375587440724, 1e-12), "{t:?}");
        assert!(close(t.p_two_sided, 0.09570475117488145, 1e-12), "{t:?}");
        assert!(close(t.prob_superiority, 24.5 / 30.0, 1e-15));
    }

    #[test]
    fn swapping_the_windows_mirrors_the_test() {
        let t = mann_whitney(&hist(&HAND_BASELINE), &hist(&HAND_CANARY)).unwrap();
        let s = mann_whitney(&hist(&HAND_CANARY), &hist(&HAND_BASELINE)).unwrap();
        assert_eq!(s.u, 30.0 - 24.5);
        assert!(close(s.z, -t.z, 1e-15));
        assert!(close(s.p_worse, 0.9679266906327978, 1e-12), "{s:?}");
        assert!(close(s.p_two_sided, t.p_two_sided, 1e-15));
        assert!(close(s.prob_superiority, 1.0 - t.prob_superiority, 1e-15));
        // The continuity correction moves each one-sided p up by at most half
        // a unit of U, so p + p_swapped − 1 lies in [0, 1/(σ√(2π))].
        let sigma = 29.18181818181818f64.sqrt();
        let excess = t.p_worse + s.p_worse - 1.0;
        let bound = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        assert!((0.0..=bound).contains(&excess), "{excess} vs {bound}");

        // At realistic sizes the excess vanishes: swap gives 1 − p.
        let mut rng = StdRng::seed_from_u64(7);
        let a = latency_hist(&mut rng, 2000, 0);
        let b = latency_hist(&mut rng, 2000, 1_000);
        let ab = mann_whitney(&a, &b).unwrap();
        let ba = mann_whitney(&b, &a).unwrap();
        assert!(
            (ab.p_worse + ba.p_worse - 1.0).abs() < 1e-3,
            "{ab:?} {ba:?}"
        );
    }

    #[test]
    fn identical_windows_give_one_sided_p_of_a_half() {
        let mut rng = StdRng::seed_from_u64(11);
        let h = latency_hist(&mut rng, 2000, 0);
        let t = mann_whitney(&h, &h).unwrap();
        assert_eq!(t.u, 2000.0 * 2000.0 / 2.0);
        assert_eq!(t.z, 0.0);
        assert_eq!(t.prob_superiority, 0.5);
        assert!((t.p_worse - 0.5).abs() < 0.01, "{t:?}");
        assert_eq!(t.p_two_sided, 1.0);
    }

    #[test]
    fn empty_windows_give_no_test() {
        let some = hist(&[10, 20]);
        assert!(mann_whitney(&new_hist(), &some).is_none());
        assert!(mann_whitney(&some, &new_hist()).is_none());
        assert!(mann_whitney(&new_hist(), &new_hist()).is_none());
        assert!(shift(&new_hist(), &some, 0.5).is_none());
        assert!(quantile_secs(&new_hist(), 0.5).is_none());
    }

    #[test]
    fn values_sharing_an_hdr_bucket_are_ties() {
        // Above 256 µs buckets widen (1/128 relative): 1000 and 1001 µs share
        // one, so two windows of them are indistinguishable.
        let probe = new_hist();
        assert_eq!(
            probe.highest_equivalent(1000),
            probe.highest_equivalent(1001)
        );
        let t = mann_whitney(&hist(&[1000; 50]), &hist(&[1001; 50])).unwrap();
        assert_eq!((t.z, t.p_worse, t.p_two_sided), (0.0, 1.0, 1.0));
        assert_eq!(t.prob_superiority, 0.5);
        // One bucket apart is a difference again.
        let t = mann_whitney(&hist(&[1000; 50]), &hist(&[1010; 50])).unwrap();
        assert!(t.p_worse < 1e-20, "{t:?}");
        assert_eq!(t.prob_superiority, 1.0);
    }

    /// U and Σ(t³ − t) by brute force over the samples, after quantizing them
    /// to their HDR bucket as the histogram does.
    fn brute_force(a: &[u64], b: &[u64]) -> (f64, f64) {
        let h = new_hist();
        let q = |v: u64| h.highest_equivalent(v);
        let mut u = 0.0;
        for &y in b {
            for &x in a {
                u += match q(y).cmp(&q(x)) {
                    std::cmp::Ordering::Greater => 1.0,
                    std::cmp::Ordering::Equal => 0.5,
                    std::cmp::Ordering::Less => 0.0,
                };
            }
        }
        let mut all: Vec<u64> = a.iter().chain(b).map(|&v| q(v)).collect();
        all.sort_unstable();
        let mut ties = 0.0;
        for group in all.chunk_by(|x, y| x == y) {
            let t = group.len() as f64;
            ties += t * t * t - t;
        }
        (u, ties)
    }

    #[test]
    fn bucket_walk_agrees_with_ranking_the_samples() {
        let mut rng = StdRng::seed_from_u64(2026);
        for case in 0..300 {
            let draw = |rng: &mut StdRng| -> u64 {
                // Small exact values with many ties, and values around 100 ms
                // where a bucket is 512 µs wide.
                if rng.random_bool(0.5) {
                    rng.random_range(1..=30)
                } else {
                    rng.random_range(100_000..=103_000)
                }
            };
            let a: Vec<u64> = (0..rng.random_range(1..60))
                .map(|_| draw(&mut rng))
                .collect();
            let b: Vec<u64> = (0..rng.random_range(1..60))
                .map(|_| draw(&mut rng))
                .collect();
            let t = mann_whitney(&hist(&a), &hist(&b)).unwrap();
            let (u, ties) = brute_force(&a, &b);
            assert_eq!(t.u, u, "case {case}");
            let (n1, n2) = (a.len() as f64, b.len() as f64);
            let n = n1 + n2;
            let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
            if var > 1e-9 {
                let z = (u - n1 * n2 / 2.0) / var.sqrt();
                assert!((t.z - z).abs() < 1e-9, "case {case}: {} vs {z}", t.z);
                let p = normal_sf((u - n1 * n2 / 2.0 - 0.5) / var.sqrt());
                assert!((t.p_worse - p).abs() < 1e-12, "case {case}");
            } else {
                assert_eq!(t.p_worse, 1.0, "case {case}");
            }
        }
    }

    #[test]
    fn huge_counts_stay_exact_and_fast() {
        // 12 billion samples in four buckets: the walk is O(buckets) and the
        // integer arithmetic does not overflow.
        let mut a = new_hist();
        a.record_n(1_000, 3_000_000_000).unwrap();
        a.record_n(2_000, 3_000_000_000).unwrap();
        let same = mann_whitney(&a, &a).unwrap();
        assert_eq!(same.baseline_count, 6_000_000_000);
        assert_eq!((same.z, same.prob_superiority), (0.0, 0.5));
        assert!((same.p_worse - 0.5).abs() < 1e-4, "{same:?}");
        let mut b = new_hist();
        b.record_n(2_000, 3_000_000_000).unwrap();
        b.record_n(3_000, 3_000_000_000).unwrap();
        let worse = mann_whitney(&a, &b).unwrap();
        // Pairs: canary 2000 vs baseline 1000 win, vs 2000 tie; canary 3000
        // beats both: U = 3e9·(3e9 + 1.5e9) + 3e9·6e9.
        assert_eq!(worse.u, 3e9 * 4.5e9 + 3e9 * 6e9);
        assert!(worse.p_worse < 1e-300 && worse.z > 1e4, "{worse:?}");
    }

    #[test]
    fn null_calibration_keeps_the_false_alarm_rate() {
        // 200 pairs of windows drawn from one distribution (2000 samples each).
        // The asymptotic test's size at α = 0.01 is at most 1 % (the continuity
        // correction and the tie correction only make it more conservative),
        // so the count below 0.01 is Binomial(200, ≤ 0.01): mean ≤ 2, and
        // P(count > 6) < 0.5 %. The bound is therefore 6 of 200 (3 %). The
        // p-values should also be roughly uniform: about half below 0.5
        // (Binomial(200, 0.5) has sd 7; 70..=130 is over 4 sd).
        let mut rng = StdRng::seed_from_u64(0x5eed_0017);
        let (mut below_1pct, mut below_half) = (0, 0);
        for _ in 0..200 {
            let a = latency_hist(&mut rng, 2000, 0);
            let b = latency_hist(&mut rng, 2000, 0);
            let t = mann_whitney(&a, &b).unwrap();
            below_1pct += usize::from(t.p_worse < 0.01);
            below_half += usize::from(t.p_worse < 0.5);
        }
        assert!(below_1pct <= 6, "{below_1pct} of 200 below 0.01");
        assert!(
            (70..=130).contains(&below_half),
            "{below_half} of 200 below 0.5"
        );
    }

    #[test]
    fn two_proportions_null_calibration_keeps_the_false_alarm_rate() {
        // 200 pairs of windows of 5000 requests at one true error ratio of
        // 1 % (about 50 errors each). Same bound as for the rank test: at most
        // 6 of 200 below 0.01.
        let mut rng = StdRng::seed_from_u64(0x5eed_e770);
        let mut below_1pct = 0;
        for _ in 0..200 {
            let mut bad = || (0..5000).filter(|_| rng.random_bool(0.01)).count() as u64;
            let (a, b) = (bad(), bad());
            let t = two_proportions(a, 5000, b, 5000).unwrap();
            below_1pct += usize::from(t.p_worse < 0.01);
        }
        assert!(below_1pct <= 6, "{below_1pct} of 200 below 0.01");
    }

    #[test]
    fn calm_windows_pass() {
        // The calm criterion on independent samples: 20 verdicts
        // between windows from one distribution give no fail and at most one
        // marginal, for latency and for errors.
        let mut rng = StdRng::seed_from_u64(20);
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            let a = latency_hist(&mut rng, 2000, 0);
            let b = latency_hist(&mut rng, 2000, 0);
            let latency = judge_latency(&a, &b, TOL_20MS, 0.01, 0.001, 100).outcome;
            let mut bad = || (0..5000).filter(|_| rng.random_bool(0.005)).count() as u64;
            let (ea, eb) = (bad(), bad());
            let errors = judge_ratio(ea, 5000, eb, 5000, TOL_HALF_PP, 0.01, 0.001, 100).outcome;
            outcomes.push(overall(&[latency, errors]));
        }
        let fails = outcomes.iter().filter(|&&o| o == Outcome::Fail).count();
        let marginals = outcomes.iter().filter(|&&o| o == Outcome::Marginal).count();
        assert_eq!(fails, 0, "{outcomes:?}");
        assert!(marginals <= 1, "{outcomes:?}");
    }

    #[test]
    fn a_50_ms_shift_is_found_and_measured() {
        let mut rng = StdRng::seed_from_u64(50);
        let base = latency_hist(&mut rng, 2000, 0);
        let canary = latency_hist(&mut rng, 2000, 50_000);
        let t = mann_whitney(&base, &canary).unwrap();
        assert!(t.p_worse < 1e-6, "{t:?}");
        assert!(t.prob_superiority > 0.9, "{t:?}");
        let s95 = shift(&base, &canary, 0.95).unwrap();
        assert!((s95 - 0.050).abs() <= 0.005, "p95 shift {s95}");
        let s50 = shift(&base, &canary, 0.5).unwrap();
        assert!((s50 - 0.050).abs() <= 0.005, "p50 shift {s50}");

        let v = judge_latency(&base, &canary, TOL_20MS, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
        assert!(v.reason.starts_with("p95 rose "), "{}", v.reason);
        // z ≈ 53: the normal tail underflows, and the reason says so.
        assert!(
            v.reason
                .contains("over the 20.0 ms tolerance; Mann–Whitney p<1e-300"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn quantiles_and_shifts_are_in_seconds() {
        let b = hist(&[100, 100, 200]);
        let c = hist(&[150, 150, 250]);
        assert_eq!(quantile_secs(&b, 0.5), Some(100e-6));
        assert_eq!(shift(&b, &c, 0.5), Some(50e-6));
        assert_eq!(shift(&c, &b, 1.0), Some(-50e-6));
        assert_eq!(shift(&b, &b, 0.95), Some(0.0));
    }

    #[test]
    fn two_proportions_matches_reference_values() {
        // 30/1000 vs 50/1000: pooled 0.04, se = √(0.04·0.96·0.002) = 0.0087636,
        // z = 0.02/se = 2.2821773, p = 0.0112394 (Python, math.erfc).
        let t = two_proportions(30, 1000, 50, 1000).unwrap();
        assert!(close(t.z, 2.2821773229381925, 1e-12), "{t:?}");
        assert!(close(t.p_worse, 0.011239436683062634, 1e-11), "{t:?}");
        assert_eq!((t.baseline_ratio, t.canary_ratio), (0.03, 0.05));
        assert!(close(t.difference, 0.02, 1e-12));
        // Swap: no continuity correction, so exactly 1 − p.
        let s = two_proportions(50, 1000, 30, 1000).unwrap();
        assert!((s.p_worse + t.p_worse - 1.0).abs() < 1e-15);
    }

    #[test]
    fn two_proportions_separates_2_percent_from_0_1_percent() {
        // 20 000 requests each: 0.1 % (20) against 2 % (400) errors.
        let t = two_proportions(20, 20_000, 400, 20_000).unwrap();
        assert!(close(t.z, 18.64022078826845, 1e-12), "{t:?}");
        assert!(t.p_worse < 1e-70, "{t:?}");
        // 0.1 % against 0.1 %: nothing.
        let t = two_proportions(20, 20_000, 20, 20_000).unwrap();
        assert_eq!((t.z, t.p_worse), (0.0, 0.5));
        assert!(t.p_worse > 0.05);
    }

    #[test]
    fn two_proportions_handles_zeros_and_bad_input() {
        let t = two_proportions(0, 1000, 0, 1000).unwrap();
        assert_eq!((t.z, t.p_worse, t.difference), (0.0, 1.0, 0.0));
        let t = two_proportions(1000, 1000, 500, 500).unwrap();
        assert_eq!((t.z, t.p_worse), (0.0, 1.0));
        let t = two_proportions(0, 1000, 3, 1000).unwrap();
        assert!(t.p_worse > 0.01 && t.p_worse < 0.1, "{t:?}");
        assert!(two_proportions(0, 0, 0, 10).is_none());
        assert!(two_proportions(0, 10, 0, 0).is_none());
        assert!(two_proportions(11, 10, 0, 10).is_none());
        assert!(two_proportions(0, 10, 11, 10).is_none());
    }

    const TOL_20MS: Tolerance = Tolerance {
        relative: 0.10,
        absolute: 0.020,
    };
    const TOL_HALF_PP: Tolerance = Tolerance {
        relative: 0.0,
        absolute: 0.005,
    };

    #[test]
    fn tolerance_takes_the_larger_allowance() {
        assert_eq!(TOL_20MS.allowed(0.1), 0.020);
        assert!(close(TOL_20MS.allowed(0.5), 0.05, 1e-15));
        assert_eq!(TOL_HALF_PP.allowed(0.9), 0.005);
    }

    #[test]
    fn judge_latency_is_inconclusive_without_enough_samples() {
        let a = hist(&[100; 50]);
        let b = hist(&[100_000; 50]);
        let v = judge_latency(&a, &b, TOL_20MS, 0.01, 0.001, 51);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(
            v.reason,
            "too few samples: baseline 50, canary 50, at least 51 each needed"
        );
        // The numbers are still reported.
        assert!(v.p_value.unwrap() < 1e-10);
        let v = judge_latency(&a, &new_hist(), TOL_20MS, 0.01, 0.001, 0);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(v.p_value, None);
        assert_eq!(v.canary_count, 0);
        assert_eq!(
            v.reason,
            "too few samples: baseline 50, canary 0, at least 1 each needed"
        );
        let v = judge_latency(&new_hist(), &new_hist(), TOL_20MS, 0.01, 0.001, 10);
        assert_eq!((v.outcome, v.allowed), (Outcome::Inconclusive, None));
    }

    #[test]
    fn judge_latency_fails_only_past_the_tolerance() {
        // Baseline 100 µs, canary 150 or 151 µs, 20 samples each; 50 µs
        // allowed. Both shifts are significant (all 400 pairs favour the
        // canary: z = 199.5/σ with σ² = 400/12 · (41 − 2·7980/1560), one-sided
        // p = 2.34e-10); only the one past 50 µs fails.
        let tol = Tolerance {
            relative: 0.0,
            absolute: 50e-6,
        };
        let base = hist(&[100; 20]);
        let at = judge_latency(&base, &hist(&[150; 20]), tol, 0.01, 0.001, 20);
        assert_eq!(at.outcome, Outcome::Marginal, "{at:?}");
        assert_eq!(
            at.reason,
            "p95 rose 0.050 ms (0.100 → 0.150 ms), within the 0.050 ms tolerance, \
             but the canary is significantly worse (Mann–Whitney p=2.3e-10)"
        );
        let past = judge_latency(&base, &hist(&[151; 20]), tol, 0.01, 0.001, 20);
        assert_eq!(past.outcome, Outcome::Fail, "{past:?}");
        assert_eq!(
            past.reason,
            "p95 rose 0.051 ms (0.100 → 0.151 ms), over the 0.050 ms tolerance; \
             Mann–Whitney p=2.3e-10"
        );
        assert!(close(past.p_value.unwrap(), 2.3413411793710456e-10, 1e-12));
        assert_eq!(past.allowed, Some(50e-6));
        let Detail::Distribution {
            shift_p50,
            shift_p95,
            prob_superiority,
            ..
        } = past.detail
        else {
            panic!("{past:?}")
        };
        assert_eq!((shift_p50, shift_p95), (Some(51e-6), Some(51e-6)));
        assert_eq!(prob_superiority, Some(1.0));
    }

    #[test]
    fn judge_latency_marks_a_small_significant_slowdown_marginal() {
        // +15 ms on a 40 ms median: real (p ≪ 0.001), past half of 20 ms but
        // within it.
        let mut rng = StdRng::seed_from_u64(5);
        let base = latency_hist(&mut rng, 2000, 0);
        let canary = latency_hist(&mut rng, 2000, 15_000);
        let v = judge_latency(&base, &canary, TOL_20MS, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Marginal, "{v:?}");
        assert!(v.p_value.unwrap() < 0.001);
        assert!(
            v.reason
                .contains("within the 20.0 ms tolerance, but the canary is significantly worse"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_significant_drift_under_half_the_tolerance_passes() {
        // +5 ms on a 40 ms median: real (p ≪ 0.001), but a quarter of the
        // 20 ms tolerance: no news, or every calm verdict would be marginal.
        let mut rng = StdRng::seed_from_u64(5);
        let base = latency_hist(&mut rng, 2000, 0);
        let canary = latency_hist(&mut rng, 2000, 5_000);
        let v = judge_latency(&base, &canary, TOL_20MS, 0.01, 0.001, 100);
        assert!(v.p_value.unwrap() < 0.001);
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
    }

    #[test]
    fn judge_latency_marks_a_tail_without_significance_marginal() {
        // The canary is faster for most requests but has a slow 8 % tail: its
        // p95 is far past the tolerance, yet it is not stochastically larger.
        let mut b = new_hist();
        b.record_n(40_000, 900).unwrap();
        b.record_n(50_000, 100).unwrap();
        let mut c = new_hist();
        c.record_n(30_000, 920).unwrap();
        c.record_n(200_000, 80).unwrap();
        let v = judge_latency(&b, &c, TOL_20MS, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Marginal, "{v:?}");
        assert!(v.p_value.unwrap() > 0.5);
        assert!(
            v.reason
                .contains("over the 20.0 ms tolerance, but not significantly"),
            "{}",
            v.reason
        );
        let Detail::Distribution { shift_p95, .. } = v.detail else {
            panic!("{v:?}")
        };
        assert!(shift_p95.unwrap() > 0.14);
    }

    #[test]
    fn judge_latency_passes_calm_and_faster_canaries() {
        let mut rng = StdRng::seed_from_u64(3);
        let base = latency_hist(&mut rng, 2000, 0);
        let v = judge_latency(&base, &base, TOL_20MS, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        assert!(v.reason.starts_with("p95 unchanged ("), "{}", v.reason);
        assert!(v
            .reason
            .contains("within the 20.0 ms tolerance; Mann–Whitney p=0.5"));

        let mut faster = new_hist();
        for v in base.iter_recorded() {
            faster
                .record_n(v.value_iterated_to() / 2, v.count_at_value())
                .unwrap();
        }
        let v = judge_latency(&base, &faster, TOL_20MS, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        assert!(v.reason.starts_with("p95 fell "), "{}", v.reason);
        assert!(v.p_value.unwrap() > 0.999);
    }

    #[test]
    fn judge_ratio_covers_every_outcome() {
        // 0.1 % → 2 % errors on 20 000 requests: fail, with the numbers.
        let v = judge_ratio(20, 20_000, 400, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(
            v.reason,
            "ratio rose 1.90 pp (0.10 % → 2.00 %), over the 0.50 pp tolerance; \
             two-proportion p=7.6e-78"
        );
        // 0.1 % → 0.5 %: real, past half of the half point, within it.
        let v = judge_ratio(20, 20_000, 100, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Marginal, "{v:?}");
        assert!(v.reason.contains("but the canary is significantly worse"));
        // 0.1 % → 0.3 %: real (z ≈ 4.5) but under half the tolerance: pass.
        let v = judge_ratio(20, 20_000, 60, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        // 0 of 10 → 1 of 10: ten points up, but p ≈ 0.15.
        let v = judge_ratio(0, 10, 1, 10, TOL_HALF_PP, 0.01, 0.001, 10);
        assert_eq!(v.outcome, Outcome::Marginal, "{v:?}");
        assert!(v.reason.contains("but not significantly"), "{}", v.reason);
        // Calm, and no errors at all.
        let v = judge_ratio(20, 20_000, 20, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        assert_eq!(
            v.reason,
            "ratio unchanged (0.10 % → 0.10 %), within the 0.50 pp tolerance; \
             two-proportion p=0.500"
        );
        let v = judge_ratio(0, 20_000, 0, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        assert_eq!((v.outcome, v.p_value), (Outcome::Pass, Some(1.0)));
        // Too few, none, and impossible counts.
        let v = judge_ratio(0, 99, 50, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(
            v.reason,
            "too few samples: baseline 99, canary 20000, at least 100 each needed"
        );
        let v = judge_ratio(0, 0, 0, 0, TOL_HALF_PP, 0.01, 0.001, 0);
        assert_eq!((v.outcome, v.p_value), (Outcome::Inconclusive, None));
        let v = judge_ratio(5, 4, 0, 10, TOL_HALF_PP, 0.01, 0.001, 0);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v.reason.starts_with("invalid counts"), "{}", v.reason);
    }

    #[test]
    fn judge_ratio_allows_a_relative_rise() {
        // 10 % → 14 % loss with "may rise by half": 5 points allowed.
        let tol = Tolerance {
            relative: 0.5,
            absolute: 0.005,
        };
        let v = judge_ratio(1000, 10_000, 1400, 10_000, tol, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Marginal, "{v:?}");
        assert!(close(v.allowed.unwrap(), 0.05, 1e-12));
        let v = judge_ratio(1000, 10_000, 1600, 10_000, tol, 0.01, 0.001, 100);
        assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
    }

    #[test]
    fn overall_covers_every_combination() {
        use Outcome::*;
        assert_eq!(overall(&[Pass, Marginal, Fail, Inconclusive]), Fail);
        assert_eq!(overall(&[Fail]), Fail);
        assert_eq!(overall(&[Pass, Marginal, Inconclusive]), Marginal);
        assert_eq!(overall(&[Inconclusive, Marginal]), Marginal);
        assert_eq!(overall(&[Pass, Inconclusive, Inconclusive]), Pass);
        assert_eq!(overall(&[Pass, Pass]), Pass);
        assert_eq!(overall(&[Inconclusive, Inconclusive]), Inconclusive);
        assert_eq!(overall(&[]), Inconclusive);
    }

    #[test]
    fn verdicts_serialize_for_the_json_answer() {
        assert_eq!(
            serde_json::to_string(&Outcome::Marginal).unwrap(),
            "\"marginal\""
        );
        assert_eq!(Outcome::Inconclusive.to_string(), "inconclusive");
        for o in [
            Outcome::Pass,
            Outcome::Marginal,
            Outcome::Fail,
            Outcome::Inconclusive,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }

        let v = judge_ratio(20, 20_000, 400, 20_000, TOL_HALF_PP, 0.01, 0.001, 100);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["outcome"], "fail");
        assert_eq!(json["kind"], "ratio");
        assert_eq!(json["canary_bad"], 400);
        assert_eq!(json["baseline_count"], 20_000);
        let back: SignalVerdict = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);

        let v = judge_latency(&hist(&[100; 10]), &new_hist(), TOL_20MS, 0.01, 0.001, 5);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["kind"], "distribution");
        assert_eq!(json["outcome"], "inconclusive");
        assert!(json["canary_p95"].is_null() && json["p_value"].is_null());
        assert_eq!(json["baseline_p50"], 100e-6);
        let back: SignalVerdict = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);

        let t = mann_whitney(&hist(&HAND_BASELINE), &hist(&HAND_CANARY)).unwrap();
        let json = serde_json::to_value(t).unwrap();
        assert_eq!(json["u"], 24.5);
        let p = two_proportions(1, 10, 2, 10).unwrap();
        assert_eq!(serde_json::to_value(p).unwrap()["canary_ratio"], 0.2);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_p(0.4321), "p=0.432");
        assert_eq!(fmt_p(0.001), "p=0.001");
        assert_eq!(fmt_p(1e-9), "p=1.0e-9");
        assert_eq!(fmt_p(0.0), "p<1e-300");
        assert_eq!(fmt_ms(0.1001), "100.1");
        assert_eq!(fmt_ms(0.000412), "0.412");
        assert_eq!(fmt_ms(0.0), "0.0");
        assert_eq!(fmt_pct(0.02), "2.00 %");
    }
}
