//! Small charts for the overview, drawn on the server as inline SVG (no
//! script, nothing the Content-Security-Policy would have to allow).

use maud::{Markup, html};

use super::state::QueueSample;

const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 120.0;
const LEFT: f64 = 28.0;
const RIGHT: f64 = 396.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 100.0;

/// Jobs waiting and running over the sampled history, one line each.
pub fn queue(samples: &[QueueSample]) -> Markup {
    let top = samples
        .iter()
        .map(|s| s.waiting.max(s.running))
        .max()
        .unwrap_or(0)
        .max(1);
    let (first, last) = match (samples.first(), samples.last()) {
        (Some(f), Some(l)) => (f.at_ms, l.at_ms),
        _ => (0, 0),
    };
    let span = last.saturating_sub(first).max(1);
    let x = |at: u64| {
        if samples.len() < 2 {
            RIGHT
        } else {
            LEFT + (at - first) as f64 / span as f64 * (RIGHT - LEFT)
        }
    };
    let y = |v: u64| BOTTOM - v as f64 / top as f64 * (BOTTOM - TOP);
    let points = |value: fn(&QueueSample) -> u64| -> String {
        samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at_ms), y(value(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let now = samples.last().copied().unwrap_or(QueueSample {
        at_ms: 0,
        waiting: 0,
        running: 0,
    });
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label={ "Queue depth: " (now.waiting) " waiting, " (now.running) " running now" }
            data-samples=(samples.len()) {
            line.axis x1=(LEFT) y1=(BOTTOM) x2=(RIGHT) y2=(BOTTOM) {}
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(BOTTOM) {}
            text.tick x="2" y=(TOP + 8.0) { (top) }
            text.tick x="2" y=(BOTTOM) { "0" }
            text.tick x=(LEFT) y=(HEIGHT - 4.0) {
                @if samples.len() < 2 { "now" } @else { "last " (crate::logs::human_duration(span)) }
            }
            text.tick.end x=(RIGHT) y=(HEIGHT - 4.0) { "now: " (now.waiting) " waiting, " (now.running) " running" }
            @if samples.len() < 2 {
                circle.waiting cx=(RIGHT) cy=(format!("{:.1}", y(now.waiting))) r="3" {}
                circle.running cx=(RIGHT) cy=(format!("{:.1}", y(now.running))) r="3" {}
            } @else {
                polyline.waiting points=(points(|s| s.waiting)) {}
                polyline.running points=(points(|s| s.running)) {}
            }
        }
    }
}

fn bound_label(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{}ms", (seconds * 1000.0).round())
    } else if seconds < 60.0 {
        format!("{seconds}s")
    } else if seconds < 3600.0 {
        format!("{}m", (seconds / 60.0).round())
    } else {
        format!("{}h", (seconds / 3600.0).round())
    }
}

/// How many attempts fell in each bucket of the engine's duration
/// histogram (`buckets` cumulative, as Prometheus keeps them; `total`
/// counts every observation), as bars.
pub fn durations(buckets: &[(f64, u64)], total: u64) -> Markup {
    // Per bucket, not cumulative: each bar counts the attempts above the
    // bound before it and at most its own.
    let mut bars: Vec<(String, u64)> = Vec::new();
    let mut below = 0;
    for (bound, cumulative) in buckets {
        bars.push((
            format!("≤{}", bound_label(*bound)),
            cumulative.saturating_sub(below),
        ));
        below = *cumulative;
    }
    if let Some((bound, _)) = buckets.last() {
        bars.push((
            format!(">{}", bound_label(*bound)),
            total.saturating_sub(below),
        ));
    }
    let top = bars.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let slot = (RIGHT - LEFT) / bars.len().max(1) as f64;
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label={ (total) " attempts since the engine started, by duration" }
            data-total=(total) {
            line.axis x1=(LEFT) y1=(BOTTOM) x2=(RIGHT) y2=(BOTTOM) {}
            text.tick x="2" y=(TOP + 8.0) { (top) }
            @for (i, (label, n)) in bars.iter().enumerate() {
                @let h = *n as f64 / top as f64 * (BOTTOM - TOP);
                @let x = LEFT + i as f64 * slot;
                g.bar {
                    title { (label) ": " (n) }
                    rect x=(format!("{:.1}", x + 2.0)) y=(format!("{:.1}", BOTTOM - h)) width=(format!("{:.1}", slot - 4.0)) height=(format!("{h:.1}")) {}
                    @if *n > 0 {
                        text.tick.mid x=(format!("{:.1}", x + slot / 2.0)) y=(format!("{:.1}", BOTTOM - h - 2.0)) { (n) }
                    }
                    text.tick.mid x=(format!("{:.1}", x + slot / 2.0)) y=(HEIGHT - 4.0) { (label) }
                }
            }
            @if total == 0 {
                text.tick.mid x=(WIDTH / 2.0) y=(HEIGHT / 2.0) { "no attempts yet" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_bars_count_each_bucket_once() {
        let svg = durations(&[(0.1, 2), (1.0, 5)], 6).into_string();
        assert!(svg.contains("<title>≤100ms: 2</title>"), "{svg}");
        assert!(svg.contains("<title>≤1s: 3</title>"), "{svg}");
        assert!(svg.contains("<title>&gt;1s: 1</title>"), "{svg}");
        assert!(svg.contains("data-total=\"6\""), "{svg}");
    }

    #[test]
    fn the_queue_line_spans_the_history_and_scales_to_its_peak() {
        let s = |at_ms, waiting| QueueSample {
            at_ms,
            waiting,
            running: 0,
        };
        let svg = queue(&[s(0, 0), s(5_000, 4), s(10_000, 2)]).into_string();
        // The peak (4) reaches the top, the last sample the right edge.
        assert!(
            svg.contains("points=\"28.0,100.0 212.0,8.0 396.0,54.0\""),
            "{svg}"
        );
        assert!(svg.contains("last 10.0s"), "{svg}");
        let one = queue(&[s(0, 3)]).into_string();
        assert!(one.contains("<circle"), "{one}");
    }
}
