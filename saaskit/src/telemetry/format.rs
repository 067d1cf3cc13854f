//! How a line looks: `tracing-subscriber`'s full text format and its JSON format, with the
//! request a line was logged for (a task-local, see [`super::RequestScope`]) printed where a
//! span would be.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::RequestScope;

/// The event formatter of every line saaskit writes.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    json: bool,
}

impl Lines {
    /// `2026-12-07T08:30:00.123456Z  INFO request{method=GET route="/healthz" request_id="…"}:
    /// saaskit::request: response status=200 latency_ms=0.2`
    pub fn text() -> Lines {
        Lines { json: false }
    }

    /// One JSON object a line: `timestamp`, `level`, `fields`, `target`, and `span` / `spans`
    /// for the request (and any span) it was logged in.
    pub fn json() -> Lines {
        Lines { json: true }
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.json {
            json_line(ctx, &mut writer, event)
        } else {
            text_line(ctx, &mut writer, event)
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

fn level_colour(level: Level) -> &'static str {
    match level {
        Level::TRACE => "\x1b[35m",
        Level::DEBUG => "\x1b[34m",
        Level::INFO => "\x1b[32m",
        Level::WARN => "\x1b[33m",
        Level::ERROR => "\x1b[31m",
    }
}

const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn text_line<S, N>(ctx: &FmtContext<'_, S, N>, w: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let ansi = w.has_ansi_escapes();
    let paint = |w: &mut Writer<'_>, code: &str| if ansi { w.write_str(code) } else { Ok(()) };
    let meta = event.metadata();
    paint(w, DIM)?;
    write_now(w)?;
    paint(w, RESET)?;
    paint(w, level_colour(*meta.level()))?;
    write!(w, " {:>5}", level_name(*meta.level()))?;
    paint(w, RESET)?;
    w.write_char(' ')?;
    let mut in_span = false;
    if let Some(written) = RequestScope::with_current(|request| {
        paint(w, BOLD)?;
        w.write_str("request")?;
        paint(w, RESET)?;
        // Debug-quoted, as a span's text fields are: a client's request id cannot forge fields.
        write!(
            w,
            "{{method={} route={:?} request_id={:?}}}:",
            request.method,
            request.route.as_str(),
            request.request_id.to_str().unwrap_or("-")
        )
    }) {
        written?;
        in_span = true;
    }
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            paint(w, BOLD)?;
            w.write_str(span.name())?;
            paint(w, RESET)?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>()
                && !fields.is_empty()
            {
                write!(w, "{{{fields}}}")?;
            }
            w.write_char(':')?;
            in_span = true;
        }
    }
    if in_span {
        w.write_char(' ')?;
    }
    paint(w, DIM)?;
    write!(w, "{}:", meta.target())?;
    paint(w, RESET)?;
    let mut fields = TextFields { w, result: Ok(()) };
    event.record(&mut fields);
    fields.result?;
    writeln!(w)
}

/// An event's fields as the default text format writes them (the message bare, then
/// `name=value`, text quoted), with numbers written without the formatting machinery.
struct TextFields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl TextFields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        self.result = (|| {
            self.w.write_char(' ')?;
            if name != "message" {
                self.w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.w.write_char('=')?;
            }
            value(self.w)
        })();
    }
}

impl Visit for TextFields<'_, '_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| write!(w, "{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(w, "{value:?}"));
    }
}

/// Writes the time now as `2026-12-07T08:30:00.123456Z`. The part up to the second is formatted
/// once a second per thread; the microseconds each time.
fn write_now(w: &mut impl fmt::Write) -> fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = chrono::Utc::now();
    let (seconds, micros) = (now.timestamp(), now.timestamp_subsec_micros().min(999_999));
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != seconds {
            cached.1.clear();
            write!(cached.1, "{}", now.format("%Y-%m-%dT%H:%M:%S"))?;
            cached.0 = seconds;
        }
        w.write_str(&cached.1)
    })?;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    w.write_char('.')?;
    for _ in digits.len()..6 {
        w.write_char('0')?;
    }
    w.write_str(digits)?;
    w.write_char('Z')
}

fn json_line<S, N>(ctx: &FmtContext<'_, S, N>, w: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let meta = event.metadata();
    w.write_str("{\"timestamp\":\"")?;
    write_now(w)?;
    write!(
        w,
        "\",\"level\":\"{}\",\"fields\":",
        level_name(*meta.level())
    )?;
    // The JSON field formatter (set with this format) writes the fields as one object.
    ctx.format_fields(w.by_ref(), event)?;
    w.write_str(",\"target\":")?;
    json_string(w, meta.target())?;

    // Every span the line is in, outermost first, each an object with its fields and name; the
    // request comes first, the innermost is `span` too.
    let mut spans = String::new();
    let mut current = String::new();
    RequestScope::with_current(|request| -> fmt::Result {
        current.clear();
        current.push_str("{\"method\":");
        json_string(&mut current, request.method.as_str())?;
        current.push_str(",\"route\":");
        json_string(&mut current, request.route.as_str())?;
        current.push_str(",\"request_id\":");
        json_string(&mut current, request.request_id.to_str().unwrap_or("-"))?;
        current.push_str(",\"name\":\"request\"}");
        spans.push_str(&current);
        Ok(())
    })
    .transpose()?;
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            current.clear();
            current.push('{');
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                let inner = fields
                    .fields
                    .trim()
                    .strip_prefix('{')
                    .and_then(|f| f.strip_suffix('}'))
                    .unwrap_or("");
                if !inner.is_empty() {
                    current.push_str(inner);
                    current.push(',');
                }
            }
            current.push_str("\"name\":");
            json_string(&mut current, span.name())?;
            current.push('}');
            if !spans.is_empty() {
                spans.push(',');
            }
            spans.push_str(&current);
        }
    }
    if !spans.is_empty() {
        write!(w, ",\"span\":{current},\"spans\":[{spans}]")?;
    }
    w.write_str("}\n")
}

/// `text` as a JSON string, quotes included.
fn json_string(w: &mut impl fmt::Write, text: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if u32::from(c) < 0x20 => "",
            _ => continue,
        };
        w.write_str(&text[plain..at])?;
        if escaped.is_empty() {
            write!(w, "\\u{:04x}", u32::from(c))?;
        } else {
            w.write_str(escaped)?;
        }
        plain = at + c.len_utf8();
    }
    w.write_str(&text[plain..])?;
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_is_rfc3339_with_microseconds() {
        for _ in 0..3 {
            let mut out = String::new();
            write_now(&mut out).expect("written");
            assert_eq!(out.len(), "2026-12-07T08:30:00.123456Z".len(), "{out}");
            let parsed = chrono::DateTime::parse_from_rfc3339(&out).expect("RFC 3339");
            let off = (chrono::Utc::now() - parsed.with_timezone(&chrono::Utc)).num_seconds();
            assert!((0..5).contains(&off), "{out}");
        }
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}").expect("written");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"");
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é\u{7f}");
    }
}
