//! ffmpeg's `-progress pipe:1` output → a percentage.

/// Turns ffmpeg's `-progress pipe:1` output, fed one line at a time, into a percentage.
///
/// ffmpeg writes blocks of `key=value` lines, each ending with `progress=continue` or, last,
/// `progress=end`. The position comes from `out_time_us`, `out_time_ms` (which, despite its
/// name, is also in microseconds) or `out_time` (`HH:MM:SS.micro`); `N/A` and negative values
/// are skipped. The percentage never goes down and stays at most 99 until `progress=end`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressParser {
    expected_us: Option<f64>,
    out_time_us: Option<u64>,
    percent: u8,
    finished: bool,
}

impl ProgressParser {
    /// A parser for an output expected to last `expected_secs` (see
    /// [`MediaOptions::expected_duration`]); with `None` or 0 it reports only 0 and then 100.
    ///
    /// [`MediaOptions::expected_duration`]: super::MediaOptions::expected_duration
    pub fn new(expected_secs: Option<f64>) -> Self {
        ProgressParser {
            expected_us: expected_secs
                .filter(|secs| secs.is_finite() && *secs > 0.0)
                .map(|secs| secs * 1e6),
            out_time_us: None,
            percent: 0,
            finished: false,
        }
    }

    /// Reads one line; returns the new percentage when it went up.
    pub fn feed_line(&mut self, line: &str) -> Option<u8> {
        if self.finished {
            return None;
        }
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key.trim() {
            "out_time_us" | "out_time_ms" => self.observe(value.parse::<u64>().ok()),
            "out_time" => self.observe(
                value
                    .strip_prefix('-')
                    .map_or_else(|| parse_timestamp(value), |_| None)
                    .map(|secs| (secs * 1e6).round() as u64),
            ),
            "progress" if value == "end" => {
                self.finished = true;
                self.percent = 100;
                Some(100)
            }
            _ => None,
        }
    }

    fn observe(&mut self, out_time_us: Option<u64>) -> Option<u8> {
        let out_time_us = out_time_us?;
        self.out_time_us = Some(self.out_time_us.map_or(out_time_us, |t| t.max(out_time_us)));
        let expected = self.expected_us?;
        // Truncation is intended: 99.9% is not done.
        let percent = ((out_time_us as f64 / expected) * 100.0).floor().min(99.0) as u8;
        (percent > self.percent).then(|| {
            self.percent = percent;
            percent
        })
    }

    /// The percentage so far, 0–100.
    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// Whether `progress=end` has been read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The furthest output position read, in seconds.
    pub fn out_time_secs(&self) -> Option<f64> {
        self.out_time_us.map(|us| us as f64 / 1e6)
    }
}

/// Seconds from `"12.5"`, `"02:03.5"` or `"01:02:03.5"`; `None` when malformed or negative.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let text = text.trim();
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 || parts.iter().any(|part| part.trim().is_empty()) {
        return None;
    }
    let mut seconds = 0.0;
    for part in parts {
        let value: f64 = part.trim().parse().ok()?;
        if !value.is_finite() || value < 0.0 || part.trim().starts_with('-') {
            return None;
        }
        seconds = seconds * 60.0 + value;
    }
    Some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ffmpeg 5.1's `-progress pipe:1` output for a one-second output.
    const PROGRESS: &str = "frame=1\nfps=0.00\nstream_0_0_q=0.0\nbitrate=   8.3kbits/s\n\
        total_size=48\nout_time_us=46440\nout_time_ms=46440\nout_time=00:00:00.046440\n\
        dup_frames=0\ndrop_frames=0\nspeed=15.5x\nprogress=continue\n\
        frame=13\nfps=0.00\nstream_0_0_q=28.0\nbitrate=N/A\ntotal_size=9000\n\
        out_time_us=520000\nout_time_ms=520000\nout_time=00:00:00.520000\n\
        dup_frames=0\ndrop_frames=0\nspeed=12x\nprogress=continue\n\
        frame=25\nfps=0.00\nstream_0_0_q=-1.0\nbitrate= 146.5kbits/s\ntotal_size=18707\n\
        out_time_us=1021678\nout_time_ms=1021678\nout_time=00:00:01.021678\n\
        dup_frames=0\ndrop_frames=0\nspeed=23.5x\nprogress=end\n";

    #[test]
    fn progress_rises_stays_below_100_and_ends_at_100() {
        let mut parser = ProgressParser::new(Some(1.0));
        let reported: Vec<u8> = PROGRESS
            .lines()
            .filter_map(|l| parser.feed_line(l))
            .collect();
        // 1021678 µs of a 1 s output is capped at 99 until `progress=end`.
        assert_eq!(reported, vec![4, 52, 99, 100]);
        assert_eq!(parser.percent(), 100);
        assert!(parser.is_finished());
        assert_eq!(parser.out_time_secs(), Some(1.021678));
    }

    #[test]
    fn progress_is_99_at_most_before_the_end() {
        let mut parser = ProgressParser::new(Some(10.0));
        assert_eq!(parser.feed_line("out_time_us=9999999"), Some(99));
        assert_eq!(parser.feed_line("out_time_us=20000000"), None);
        assert_eq!(parser.feed_line("progress=continue"), None);
        assert_eq!(parser.percent(), 99);
        assert!(!parser.is_finished());
        assert_eq!(parser.feed_line("progress=end"), Some(100));
        assert_eq!(parser.feed_line("out_time_us=1"), None);
        assert_eq!(parser.feed_line("progress=end"), None);
        assert_eq!(parser.percent(), 100);
    }

    #[test]
    fn progress_never_goes_down() {
        let mut parser = ProgressParser::new(Some(100.0));
        assert_eq!(parser.feed_line("out_time_us=50000000"), Some(50));
        assert_eq!(parser.feed_line("out_time_us=20000000"), None);
        assert_eq!(parser.percent(), 50);
        assert_eq!(parser.out_time_secs(), Some(50.0));
        assert_eq!(parser.feed_line("out_time_us=50900000"), None);
        assert_eq!(parser.feed_line("out_time_us=51000000"), Some(51));
    }

    #[test]
    fn progress_skips_na_negative_and_malformed_values() {
        let mut parser = ProgressParser::new(Some(10.0));
        for line in [
            "out_time_us=N/A",
            "out_time_ms=N/A",
            "out_time=N/A",
            "out_time_us=-9223372036854775807",
            "out_time=-577014:32:22.775808",
            "out_time_us=",
            "garbage",
            "",
            "speed=N/A",
            "bitrate=N/A",
        ] {
            assert_eq!(parser.feed_line(line), None, "{line}");
        }
        assert_eq!(parser.percent(), 0);
        assert_eq!(parser.out_time_secs(), None);
    }

    #[test]
    fn progress_reads_out_time_ms_and_out_time_as_microsecond_positions() {
        let mut parser = ProgressParser::new(Some(4.0));
        // ffmpeg writes microseconds under out_time_ms too.
        assert_eq!(parser.feed_line("out_time_ms=1000000"), Some(25));
        assert_eq!(parser.feed_line(" out_time = 00:00:02.000000 "), Some(50));
        assert_eq!(parser.feed_line("out_time=00:00:03.100000\r"), Some(77));
    }

    #[test]
    fn progress_without_a_known_duration_is_0_then_100() {
        for expected in [None, Some(0.0), Some(f64::NAN), Some(-3.0)] {
            let mut parser = ProgressParser::new(expected);
            assert_eq!(parser.feed_line("out_time_us=5000000"), None);
            assert_eq!(parser.percent(), 0);
            assert_eq!(parser.out_time_secs(), Some(5.0));
            assert_eq!(parser.feed_line("progress=end"), Some(100));
        }
    }

    #[test]
    fn timestamps_parse_in_seconds() {
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
        assert_eq!(parse_timestamp("02:03.5"), Some(123.5));
        assert_eq!(parse_timestamp("01:02:03"), Some(3723.0));
        assert_eq!(parse_timestamp("00:00:01.021678"), Some(1.021678));
        for bad in ["", "N/A", "-1", "1::2", "a:b", "1:2:3:4", "inf"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
