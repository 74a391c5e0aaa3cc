//! Window and decision arithmetic of rate-limiting (kong-compat §4.3, §4.4):
//! where each period's fixed window starts (UTC calendar boundaries), Kong's
//! decision rule, the sliding estimate, and the client headers. Pure
//! functions of the counts and the time, so they are tested without a clock.

use super::Period;
use crate::runtime::ResponseHeaders;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use std::sync::OnceLock;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of the civil date `year-month-day` (proleptic
/// Gregorian, months 1..=12).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Counting years from March makes the leap day the last day of a year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil `(year, month)` of a day number since 1970-01-01.
fn year_month_of_day(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The start (Unix milliseconds) of the window of `period` containing `now_ms`,
/// aligned to UTC calendar boundaries as Kong's `timestamp.get_timestamps`.
pub fn window_start(period: Period, now_ms: i64) -> i64 {
    let floor_to = |unit: i64| now_ms.div_euclid(unit) * unit;
    match period {
        Period::Second => floor_to(1000),
        Period::Minute => floor_to(60_000),
        Period::Hour => floor_to(3_600_000),
        Period::Day => floor_to(DAY_MS),
        Period::Month => {
            let (year, month) = year_month_of_day(now_ms.div_euclid(DAY_MS));
            days_from_civil(year, month, 1) * DAY_MS
        }
        Period::Year => {
            let (year, _) = year_month_of_day(now_ms.div_euclid(DAY_MS));
            days_from_civil(year, 1, 1) * DAY_MS
        }
    }
}

/// The start of the window before the one containing `now_ms`.
pub fn previous_window_start(period: Period, now_ms: i64) -> i64 {
    window_start(period, window_start(period, now_ms) - 1)
}

/// The start of the window after the one containing `now_ms`.
pub fn next_window_start(period: Period, now_ms: i64) -> i64 {
    let start = window_start(period, now_ms);
    match period {
        Period::Month | Period::Year => {
            // Calendar lengths differ; 32 (or 366) days past the start is
            // always inside the next window.
            let jump = if period == Period::Month { 32 } else { 366 };
            window_start(period, start + jump * DAY_MS)
        }
        _ => start + period_ms(period),
    }
}

fn period_ms(period: Period) -> i64 {
    i64::try_from(period.seconds())
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// The weight of the previous window's count in the sliding estimate: the
/// share of a window-length span ending now that lies in the previous window.
pub fn previous_weight(period: Period, now_ms: i64) -> f64 {
    let start = window_start(period, now_ms);
    let length = (next_window_start(period, now_ms) - start) as f64;
    let elapsed = (now_ms - start) as f64;
    if length <= 0.0 {
        return 0.0;
    }
    (1.0 - elapsed / length).clamp(0.0, 1.0)
}

/// The usage a request is judged by: the count before it in the current
/// window, plus (sliding) the weighted whole requests of the previous one.
pub fn usage(current_before: u64, previous: u64, weight: f64) -> f64 {
    current_before as f64 + (previous as f64 * weight).floor()
}

/// One configured period's state for this request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodUsage {
    pub period: Period,
    pub limit: f64,
    /// Requests counted before this one (Kong's `usage`).
    pub usage: f64,
}

/// Periods there are (second to year): the most a verdict holds.
pub const MAX_PERIODS: usize = 6;

/// The outcome of Kong's decision rule over every configured period.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `true` when some period has no request left (`limit - usage <= 0`).
    pub rejected: bool,
    /// Per period: `(period, limit, remaining shown)`; the first
    /// `period_count` are set (an array: a verdict is made per request).
    periods: [(Period, f64, f64); MAX_PERIODS],
    period_count: usize,
    /// Which of `periods` is the most restrictive.
    best: usize,
    /// The most restrictive period's limit, remaining and reset seconds.
    pub limit: f64,
    pub remaining: f64,
    pub reset: i64,
}

impl Verdict {
    /// Per configured period: `(period, limit, remaining shown)`.
    pub fn periods(&self) -> &[(Period, f64, f64)] {
        &self.periods[..self.period_count]
    }
}

/// Kong's decision (kong-compat §4.3) and the header values (§4.4).
///
/// Allowed: every period shows `max(0, remaining - 1)`. Rejected: periods
/// without requests left show 0, the others their un-decremented remaining.
/// The most restrictive period has the lowest shown remaining, the longer
/// window winning ties; its reset is `max(1, window - elapsed seconds)`
/// with Kong's fixed window lengths (a month is 30 days). At most
/// [`MAX_PERIODS`] usages are judged (one per period).
pub fn decide(usages: &[PeriodUsage], now_ms: i64) -> Verdict {
    let usages = &usages[..usages.len().min(MAX_PERIODS)];
    let rejected = usages.iter().any(|u| u.limit - u.usage <= 0.0);
    let mut periods = [(Period::Second, 0.0, 0.0); MAX_PERIODS];
    let mut best: Option<(usize, f64, f64, Period)> = None;
    for (index, u) in usages.iter().enumerate() {
        let remaining = u.limit - u.usage;
        let shown = if !rejected || remaining <= 0.0 {
            (remaining - 1.0).max(0.0)
        } else {
            remaining.max(0.0)
        };
        periods[index] = (u.period, u.limit, shown);
        let better = match best {
            None => true,
            Some((_, _, best_remaining, best_period)) => {
                shown < best_remaining
                    || (shown == best_remaining && u.period.seconds() > best_period.seconds())
            }
        };
        if better {
            best = Some((index, u.limit, shown, u.period));
        }
    }
    let (best, limit, remaining, period) = best.unwrap_or((0, 0.0, 0.0, Period::Second));
    let elapsed_s = (now_ms - window_start(period, now_ms)).div_euclid(1000);
    let window_s = i64::try_from(period.seconds()).unwrap_or(i64::MAX);
    Verdict {
        rejected,
        periods,
        period_count: usages.len(),
        best,
        limit,
        remaining,
        reset: (window_s - elapsed_s).max(1),
    }
}

/// `value` as an integer, when it is one that prints without a fraction
/// (Kong prints such numbers as integers).
pub fn as_whole(value: f64) -> Option<i64> {
    (value.fract() == 0.0 && value.abs() < 1e15).then_some(value as i64)
}

/// A number as Kong prints it in a header: integers without a fraction.
pub fn format_number(value: f64) -> String {
    match as_whole(value) {
        Some(whole) => format!("{whole}"),
        None => format!("{value}"),
    }
}

/// [`format_number`] as a header value; whole numbers (every count and
/// limit in practice) skip the formatter, and small ones (every reset of a
/// second to an hour window, the remaining count of most limits) are copied
/// from a table instead of allocated.
fn header_number(value: f64) -> Option<HeaderValue> {
    if let Some(whole) = as_whole(value) {
        match usize::try_from(whole)
            .ok()
            .and_then(|n| small_numbers().get(n))
        {
            Some(rendered) => Some(rendered.clone()),
            None => Some(HeaderValue::from(whole)),
        }
    } else {
        HeaderValue::from_str(&format_number(value)).ok()
    }
}

/// The largest number [`small_numbers`] holds: an hour in seconds.
const SMALL_NUMBERS: usize = 3600;

/// `0..=3600` as header values over one static buffer: a clone copies a
/// pointer, where a fresh value allocates.
fn small_numbers() -> &'static [HeaderValue] {
    static TABLE: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(SMALL_NUMBERS + 1);
        for n in 0..=SMALL_NUMBERS {
            text.push_str(itoa::Buffer::new().format(n));
            ends.push(text.len());
        }
        // Built once per process and used for as long as it runs.
        let text = Bytes::from_static(Box::leak(text.into_boxed_str()).as_bytes());
        let mut start = 0;
        let mut table = Vec::with_capacity(ends.len());
        for end in ends {
            match HeaderValue::from_maybe_shared(text.slice(start..end)) {
                Ok(value) => table.push(value),
                // Digits are always a valid value; stop the table short if not.
                Err(_) => break,
            }
            start = end;
        }
        table
    })
}

/// `X-RateLimit-Limit-<P>` and `X-RateLimit-Remaining-<P>` of every period.
pub fn period_header_names(period: Period) -> (HeaderName, HeaderName) {
    // Constants: `from_static` outside a const context validates every call.
    match period {
        Period::Second => {
            const {
                (
                    HeaderName::from_static("x-ratelimit-limit-second"),
                    HeaderName::from_static("x-ratelimit-remaining-second"),
                )
            }
        }
        Period::Minute => {
            const {
                (
                    HeaderName::from_static("x-ratelimit-limit-minute"),
                    HeaderName::from_static("x-ratelimit-remaining-minute"),
                )
            }
        }
        Period::Hour => {
            const {
                (
                    HeaderName::from_static("x-ratelimit-limit-hour"),
                    HeaderName::from_static("x-ratelimit-remaining-hour"),
                )
            }
        }
        Period::Day => {
            const {
                (
                    HeaderName::from_static("x-ratelimit-limit-day"),
                    HeaderName::from_static("x-ratelimit-remaining-day"),
                )
            }
        }
        Period::Month => {
            const {
                (
                    HeaderName::from_static("x-ratelimit-limit-month"),
                    HeaderName::from_static("x-ratelimit-remaining-month"),
                )
            }
        }
        Period::Year => {
            const {
                (
                    HeaderName::from_static("x-ratelimit-limit-year"),
                    HeaderName::from_static("x-ratelimit-remaining-year"),
                )
            }
        }
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Limits rendered once per instance: a limit is the same on every
/// request, so only the remaining counts and the reset are formatted.
#[derive(Debug, Clone, Default)]
pub struct RenderedLimits(Vec<(f64, HeaderValue)>);

impl RenderedLimits {
    pub fn new(limits: &[(Period, f64)]) -> RenderedLimits {
        RenderedLimits(
            limits
                .iter()
                .filter_map(|&(_, limit)| Some((limit, header_number(limit)?)))
                .collect(),
        )
    }

    fn value(&self, limit: f64) -> Option<HeaderValue> {
        match self.0.iter().find(|(known, _)| *known == limit) {
            Some((_, value)) => Some(value.clone()),
            // A node's share of the limits (Redis fallback) is not rendered.
            None => header_number(limit),
        }
    }
}

/// The headers of a verdict, in the order Kong sets them.
#[cfg(test)]
pub fn headers(verdict: &Verdict) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = ResponseHeaders::default();
    set_headers(verdict, &RenderedLimits::default(), &mut out);
    out.into_iter().collect()
}

/// Sets the headers of a verdict on the response, in the order Kong sets them.
/// Only rate-limiting sets these names, once per request, so they are
/// appended without looking for an earlier value.
pub fn set_headers(verdict: &Verdict, limits: &RenderedLimits, out: &mut ResponseHeaders) {
    out.reserve(verdict.period_count * 2 + 4);
    // The most restrictive period's remaining is also `RateLimit-Remaining`.
    let mut best_remaining = None;
    for (index, &(period, limit, remaining)) in verdict.periods().iter().enumerate() {
        let (limit_name, remaining_name) = period_header_names(period);
        if let (Some(limit), Some(remaining)) = (limits.value(limit), header_number(remaining)) {
            out.append_new(limit_name, limit);
            if index == verdict.best {
                best_remaining = Some(remaining.clone());
            }
            out.append_new(remaining_name, remaining);
        }
    }
    let remaining = best_remaining.or_else(|| header_number(verdict.remaining));
    if let (Some(limit), Some(remaining)) = (limits.value(verdict.limit), remaining) {
        out.append_new(RATELIMIT_LIMIT, limit);
        out.append_new(RATELIMIT_REMAINING, remaining);
    }
    let Some(reset) = header_number(verdict.reset as f64) else {
        return;
    };
    if verdict.rejected {
        out.append_new(RATELIMIT_RESET, reset.clone());
        out.insert(http::header::RETRY_AFTER, reset);
    } else {
        out.append_new(RATELIMIT_RESET, reset);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rand::{Rng, SeedableRng};

    /// 2024-02-29T13:45:30.250Z
    const LEAP_DAY: i64 = 1_709_214_330_250;

    #[test]
    fn windows_align_to_utc_calendar_boundaries() {
        let cases = [
            (Period::Second, 1_709_214_330_000),
            (Period::Minute, 1_709_214_300_000),
            (Period::Hour, 1_709_211_600_000),
            (Period::Day, 1_709_164_800_000),
            (Period::Month, 1_706_745_600_000), // 2024-02-01
            (Period::Year, 1_704_067_200_000),  // 2024-01-01
        ];
        for (period, start) in cases {
            assert_eq!(window_start(period, LEAP_DAY), start, "{period:?}");
        }
        assert_eq!(
            next_window_start(Period::Month, LEAP_DAY),
            1_709_251_200_000
        ); // 2024-03-01
        assert_eq!(next_window_start(Period::Year, LEAP_DAY), 1_735_689_600_000); // 2025-01-01
        assert_eq!(
            previous_window_start(Period::Month, LEAP_DAY),
            1_704_067_200_000
        ); // 2024-01-01
        assert_eq!(window_start(Period::Year, 0), 0);
        assert_eq!(window_start(Period::Month, 0), 0);
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in -800_000..800_000i64 {
            let (year, month) = year_month_of_day(days);
            let first = days_from_civil(year, month, 1);
            assert!(first <= days && days - first < 31, "{days}");
            assert!((1..=12).contains(&month));
        }
    }

    #[test]
    fn property_windows_contain_now_and_are_stable() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let now = rng.random_range(0..4_102_444_800_000i64); // until 2100
            for period in Period::ALL {
                let start = window_start(period, now);
                let next = next_window_start(period, now);
                assert!(start <= now && now < next, "{period:?} {now}");
                assert_eq!(window_start(period, start), start);
                assert_eq!(window_start(period, next - 1), start);
                assert_eq!(window_start(period, next), next);
                let weight = previous_weight(period, now);
                assert!((0.0..=1.0).contains(&weight));
            }
        }
    }

    fn usage_of(period: Period, limit: f64, usage: f64) -> PeriodUsage {
        PeriodUsage {
            period,
            limit,
            usage,
        }
    }

    #[test]
    fn limit_n_allows_n_requests() {
        for limit in [1.0, 2.0, 5.0, 100.0] {
            let allowed = (0..200)
                .take_while(|&n| {
                    !decide(&[usage_of(Period::Minute, limit, f64::from(n))], 0).rejected
                })
                .count();
            assert_eq!(allowed as f64, limit);
        }
        // A fractional limit allows every request while some remains.
        let allowed = (0..10)
            .take_while(|&n| !decide(&[usage_of(Period::Minute, 2.5, f64::from(n))], 0).rejected)
            .count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn small_numbers_are_rendered_as_formatting_renders_them() {
        let table = small_numbers();
        assert_eq!(table.len(), SMALL_NUMBERS + 1);
        for (n, value) in table.iter().enumerate() {
            assert_eq!(value.to_str().unwrap(), n.to_string());
        }
        for n in [0.0, 7.0, 3600.0, 3601.0, 1e9, 2.5, -1.0] {
            assert_eq!(
                header_number(n).unwrap().to_str().unwrap(),
                format_number(n),
                "{n}"
            );
        }
    }

    #[test]
    fn headers_of_allowed_and_rejected_requests() {
        // 13:45:30.250: 29.75 s... Kong floors the elapsed seconds.
        let allowed = decide(
            &[
                usage_of(Period::Second, 5.0, 1.0),
                usage_of(Period::Minute, 10.0, 8.0),
                usage_of(Period::Hour, 100.0, 8.0),
            ],
            LEAP_DAY,
        );
        assert!(!allowed.rejected);
        assert_eq!(
            allowed.periods(),
            [
                (Period::Second, 5.0, 3.0),
                (Period::Minute, 10.0, 1.0),
                (Period::Hour, 100.0, 91.0)
            ]
        );
        assert_eq!(
            (allowed.limit, allowed.remaining, allowed.reset),
            (10.0, 1.0, 30)
        );
        let names: Vec<String> = headers(&allowed)
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                "x-ratelimit-limit-second: 5",
                "x-ratelimit-remaining-second: 3",
                "x-ratelimit-limit-minute: 10",
                "x-ratelimit-remaining-minute: 1",
                "x-ratelimit-limit-hour: 100",
                "x-ratelimit-remaining-hour: 91",
                "ratelimit-limit: 10",
                "ratelimit-remaining: 1",
                "ratelimit-reset: 30",
            ]
        );

        let rejected = decide(
            &[
                usage_of(Period::Second, 5.0, 1.0),
                usage_of(Period::Minute, 10.0, 10.0),
            ],
            LEAP_DAY,
        );
        assert!(rejected.rejected);
        assert_eq!(
            rejected.periods(),
            [(Period::Second, 5.0, 4.0), (Period::Minute, 10.0, 0.0)]
        );
        assert_eq!(
            (rejected.limit, rejected.remaining, rejected.reset),
            (10.0, 0.0, 30)
        );
        let retry = headers(&rejected)
            .into_iter()
            .find(|(n, _)| n == http::header::RETRY_AFTER)
            .unwrap();
        assert_eq!(retry.1, "30");
    }

    #[test]
    fn ties_go_to_the_longer_window_and_reset_is_at_least_one() {
        let verdict = decide(
            &[
                usage_of(Period::Second, 3.0, 0.0),
                usage_of(Period::Minute, 3.0, 0.0),
            ],
            LEAP_DAY,
        );
        assert_eq!(verdict.reset, 30);
        // Kong's month is 30 days: on the 31st the reset floors at 1.
        let march_31 = 1_711_843_200_000 + 3_600_000; // 2024-03-31T01:00Z
        let verdict = decide(&[usage_of(Period::Month, 3.0, 0.0)], march_31);
        assert_eq!(verdict.reset, 1);
    }

    #[test]
    fn rendered_limits_give_the_same_headers_as_formatting() {
        let limits = [(Period::Second, 5.0), (Period::Hour, 1000.0)];
        let rendered = RenderedLimits::new(&limits);
        // A node's share (2.5, 500) is not among the rendered values.
        for limits in [limits, [(Period::Second, 2.5), (Period::Hour, 500.0)]] {
            for used in [0.0, 1.0, 4.0, 5.0, 999.0] {
                let usages: Vec<PeriodUsage> = limits
                    .iter()
                    .map(|&(period, limit)| PeriodUsage {
                        period,
                        limit,
                        usage: used,
                    })
                    .collect();
                let verdict = decide(&usages, LEAP_DAY);
                let mut set = ResponseHeaders::default();
                set_headers(&verdict, &rendered, &mut set);
                let set: Vec<_> = set.into_iter().collect();
                assert_eq!(set, headers(&verdict), "{limits:?} {used}");
            }
        }
    }

    #[test]
    fn property_header_arithmetic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for _ in 0..50_000 {
            let now = rng.random_range(0..4_102_444_800_000i64);
            let count = rng.random_range(1..=6);
            let mut usages = Vec::new();
            let mut limit = 0.0;
            for period in Period::ALL.iter().take(count) {
                limit += f64::from(rng.random_range(1..50u32));
                usages.push(usage_of(
                    *period,
                    limit,
                    f64::from(rng.random_range(0..60u32)),
                ));
            }
            let verdict = decide(&usages, now);
            let any_exhausted = usages.iter().any(|u| u.usage >= u.limit);
            assert_eq!(verdict.rejected, any_exhausted);
            for (u, &(period, shown_limit, shown)) in usages.iter().zip(verdict.periods()) {
                assert_eq!((period, shown_limit), (u.period, u.limit));
                assert!(shown >= 0.0 && shown <= u.limit);
                let expected = if !verdict.rejected {
                    (u.limit - u.usage - 1.0).max(0.0)
                } else if u.usage >= u.limit {
                    0.0
                } else {
                    u.limit - u.usage
                };
                assert_eq!(shown, expected);
            }
            let min = verdict
                .periods()
                .iter()
                .map(|p| p.2)
                .fold(f64::INFINITY, f64::min);
            assert_eq!(verdict.remaining, min);
            assert!(verdict.reset >= 1);
            assert!(verdict.reset <= 31_536_000);
            let has_retry = headers(&verdict)
                .iter()
                .any(|(n, _)| n == http::header::RETRY_AFTER);
            assert_eq!(has_retry, verdict.rejected);
        }
    }

    #[test]
    fn sliding_usage_weights_the_previous_window() {
        assert_eq!(usage(3, 10, 0.55), 8.0);
        assert_eq!(usage(0, 0, 1.0), 0.0);
        // 15 s into a minute, 75% of the previous minute still counts.
        let weight = previous_weight(Period::Minute, 60_000 * 1000 + 15_000);
        assert!((weight - 0.75).abs() < 1e-12);
    }

    #[test]
    fn numbers_print_as_kong_prints_them() {
        assert_eq!(format_number(100.0), "100");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(0.0), "0");
    }
}
