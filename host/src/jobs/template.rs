//! The dedupe key template language of a job kind: parsed (and refused when invalid) at load,
//! rendered against an event. Pure: no I/O.
//!
//! A template is literal text and placeholders in braces:
//! - `{event.name}`: the event's full name (`form:submitted`);
//! - `{event.id}`: the event's id;
//! - `{payload<pointer>}`: the value at a JSON pointer (RFC 6901) in the event's JSON payload,
//!   for example `{payload/user/id}`; `{payload./user/id}` is the same (the `.` is optional).
//!   A string renders as its text, any other value as compact JSON.
//!
//! `{{` and `}}` are a literal `{` and `}`. Anything else in braces, an unclosed `{`, a lone `}`
//! or a template longer than [`MAX_TEMPLATE_BYTES`] is refused.

use serde::Serialize;

/// The longest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 256;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    EventName,
    EventId,
    /// A JSON pointer into the payload (`""` is the whole payload).
    Payload(String),
}

/// A parsed dedupe key template; serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl Serialize for KeyTemplate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// What a template is rendered against: the fields of one event.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// The event's full name.
    pub name: &'a str,
    /// The event's id.
    pub id: &'a str,
    /// The event's payload, as JSON.
    pub payload: &'a serde_json::Value,
}

fn placeholder(inner: &str) -> Result<Piece, String> {
    match inner {
        "event.name" => return Ok(Piece::EventName),
        "event.id" => return Ok(Piece::EventId),
        _ => {}
    }
    if let Some(rest) = inner.strip_prefix("payload") {
        let pointer = rest.strip_prefix('.').unwrap_or(rest);
        if pointer.is_empty() || pointer.starts_with('/') {
            if let Some(bad) = pointer
                .split('~')
                .skip(1)
                .find(|s| !(s.starts_with('0') || s.starts_with('1')))
            {
                return Err(format!(
                    "`{{{inner}}}`: `~{bad}` is not `~0` or `~1` in a JSON pointer"
                ));
            }
            return Ok(Piece::Payload(pointer.to_owned()));
        }
        return Err(format!(
            "`{{{inner}}}`: a payload placeholder is `{{payload}}` or `{{payload/<JSON pointer>}}`"
        ));
    }
    Err(format!(
        "`{{{inner}}}` is not a placeholder; use {{event.name}}, {{event.id}} or \
         {{payload/<JSON pointer>}} (`{{{{` and `}}}}` write literal braces)"
    ))
}

impl KeyTemplate {
    /// Parses a template.
    ///
    /// # Errors
    /// What is wrong with it, in words (the caller wraps it in `invalid_job`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the template is empty".into());
        }
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(format!(
                "the template is {} bytes long; the limit is {MAX_TEMPLATE_BYTES}",
                text.len()
            ));
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(format!("a lone `}}` at byte {at}; write `}}}}`")),
                '{' => {
                    let rest = &text[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!("the `{{` at byte {at} is never closed"));
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(placeholder(&rest[..end])?);
                    while chars.peek().is_some_and(|(i, _)| *i <= at + 1 + end) {
                        chars.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The template as declared.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Renders the key for one event.
    ///
    /// # Errors
    /// The JSON pointer that finds nothing in the payload.
    pub fn render(&self, event: &EventFields<'_>) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::EventName => out.push_str(event.name),
                Piece::EventId => out.push_str(event.id),
                Piece::Payload(pointer) => match event.payload.pointer(pointer) {
                    Some(serde_json::Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => {
                        return Err(format!("the payload has nothing at `{pointer}`"));
                    }
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, payload: &serde_json::Value) -> Result<String, String> {
        KeyTemplate::parse(template)?.render(&EventFields {
            name: "form:submitted",
            id: "ev-42",
            payload,
        })
    }

    #[test]
    fn renders_literals_and_placeholders() {
        let p = json!({"user": {"id": 7, "email": "a@b"}, "a/b": "slash", "list": [1, 2]});
        assert_eq!(render("{event.id}", &p).unwrap(), "ev-42");
        assert_eq!(
            render("k:{event.name}:{payload./user/id}", &p).unwrap(),
            "k:form:submitted:7"
        );
        assert_eq!(render("{payload/user/email}", &p).unwrap(), "a@b");
        assert_eq!(render("{payload/a~1b}", &p).unwrap(), "slash");
        assert_eq!(render("{payload/list}", &p).unwrap(), "[1,2]");
        assert_eq!(render("{payload}", &json!("x")).unwrap(), "x");
        assert_eq!(render("{{lit}}-{event.id}", &p).unwrap(), "{lit}-ev-42");
        assert_eq!(render("only-one", &p).unwrap(), "only-one");
        assert_eq!(render("é{event.id}é", &p).unwrap(), "éev-42é");
    }

    #[test]
    fn a_missing_pointer_fails_the_render() {
        let e = render("{payload/user/name}", &json!({"user": {}})).unwrap_err();
        assert!(e.contains("/user/name"), "{e}");
    }

    #[test]
    fn refuses_bad_templates() {
        for (bad, says) in [
            ("", "empty"),
            ("{event.ts}", "not a placeholder"),
            ("{event}", "not a placeholder"),
            ("{}", "not a placeholder"),
            ("{payloadx}", "payload placeholder"),
            ("{payload.user}", "payload placeholder"),
            ("{payload/a~2}", "~2"),
            ("{event.id", "never closed"),
            ("a}b", "lone"),
            ("{ event.id }", "not a placeholder"),
        ] {
            let e = KeyTemplate::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(KeyTemplate::parse(&long).unwrap_err().contains("limit"));
        KeyTemplate::parse(&"x".repeat(MAX_TEMPLATE_BYTES)).unwrap();
    }
}
