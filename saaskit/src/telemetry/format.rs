//! How a line looks: `tracing-subscriber`'s full text format and its JSON format, with the
//! request a line was logged for (a task-local, see [`super::RequestScope`]) printed where a
//! span would be.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
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
    SystemTime.format_time(w)?;
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
    w.write_char(' ')?;
    ctx.format_fields(w.by_ref(), event)?;
    writeln!(w)
}

fn json_line<S, N>(ctx: &FmtContext<'_, S, N>, w: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let meta = event.metadata();
    w.write_str("{\"timestamp\":\"")?;
    SystemTime.format_time(w)?;
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
    fn json_strings_escape_what_json_requires() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}").expect("written");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"");
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é\u{7f}");
    }
}
