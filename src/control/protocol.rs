//! The Circus 0.19 control protocol: request parsing, reply building and
//! property helpers. Pure functions, no I/O.
//!
//! Wire format (one JSON frame each way):
//! - request: `{"command": <name>, "properties": {...}, "id": <any>, "msg_type": "cast"?}`
//! - ok reply: `{"status": "ok", "time": <epoch f64>, ...fields..., "id": <echo>}`
//! - error reply: `{"status": "error", "reason": .., "tb": null, "time": .., "errno": .., "id": ..}`
//!
//! Unlike Circus, every malformed request gets an error reply (Circus stays
//! silent and may stall its control stream, see circus.md §1.2 and §11).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Largest request body accepted; bigger bodies get errno 3 "message too large".
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Circus error numbers (`circus/errors.py`), sent as `errno` in error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Errno {
    NotSpecified = 0,
    InvalidJson = 1,
    UnknownCommand = 2,
    MessageError = 3,
    OsError = 4,
    CommandError = 5,
    BadMsgDataError = 6,
}

impl Errno {
    /// The numeric value put on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failed command (or request) as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CommandError {
    pub errno: Errno,
    pub reason: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.reason, self.errno.code())
    }
}

impl CommandError {
    pub fn new(errno: Errno, reason: impl Into<String>) -> Self {
        CommandError {
            errno,
            reason: reason.into(),
        }
    }

    /// errno 1, reason exactly "json invalid" as Circus sends it.
    pub fn invalid_json() -> Self {
        Self::new(Errno::InvalidJson, "json invalid")
    }

    /// errno 3: validation errors, "program X not found", ...
    pub fn message(reason: impl Into<String>) -> Self {
        Self::new(Errno::MessageError, reason)
    }

    /// errno 3 "message invalid 'X' is missing" (a required property is absent).
    pub fn missing_property(name: &str) -> Self {
        Self::message(format!("message invalid '{name}' is missing"))
    }

    /// errno 2 "unknown command: 'x'".
    pub fn unknown_command(name: &str) -> Self {
        Self::new(Errno::UnknownCommand, format!("unknown command: '{name}'"))
    }

    /// errno 5: conflicts and unexpected failures.
    pub fn command(reason: impl Into<String>) -> Self {
        Self::new(Errno::CommandError, reason)
    }

    /// errno 4: an operating-system error.
    pub fn os(reason: impl Into<String>) -> Self {
        Self::new(Errno::OsError, reason)
    }

    /// errno 6 (Circus: "server error" when a `waiting` future fails).
    pub fn bad_msg_data(reason: impl Into<String>) -> Self {
        Self::new(Errno::BadMsgDataError, reason)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(err: std::io::Error) -> Self {
        CommandError::os(err.to_string())
    }
}

/// A parsed, validated control request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed verbatim in the reply; `Null` when the request had none.
    pub id: Value,
    /// The command name, lowercased (Circus matches names case-insensitively).
    pub command: String,
    /// `properties`, `{}` when absent or null.
    pub properties: Map<String, Value>,
    /// `"msg_type": "cast"`: run the command but never reply.
    pub cast: bool,
}

/// Parses one request body. On failure returns the id to echo (when the body
/// got far enough to have one, otherwise `Null`) and the error to reply with.
pub fn parse_request(body: &[u8]) -> Result<Request, (Value, CommandError)> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err((
            Value::Null,
            CommandError::message(format!(
                "message too large ({} bytes, the limit is {MAX_REQUEST_BYTES})",
                body.len()
            )),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| (Value::Null, CommandError::invalid_json()))?;
    if text.trim().is_empty() {
        return Err((
            Value::Null,
            CommandError::new(Errno::InvalidJson, "json invalid: empty message"),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|_| (Value::Null, CommandError::invalid_json()))?;
    let Value::Object(mut obj) = value else {
        return Err((
            Value::Null,
            CommandError::new(
                Errno::InvalidJson,
                "json invalid: the message must be a JSON object",
            ),
        ));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    let command = match obj.remove("command") {
        None | Some(Value::Null) => return Err((id, CommandError::missing_property("command"))),
        Some(Value::String(s)) => s.to_lowercase(),
        Some(_) => {
            return Err((
                id,
                CommandError::message("message invalid 'command' should be a string"),
            ))
        }
    };
    let properties = match obj.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err((
                id,
                CommandError::message("'properties' property should be an object"),
            ))
        }
    };
    let cast = matches!(obj.get("msg_type"), Some(Value::String(t)) if t == "cast");
    Ok(Request {
        id,
        command,
        properties,
        cast,
    })
}

/// Best-effort extraction of the request id from a body that may be
/// malformed in other ways (used to echo the id in transport-level errors).
pub fn peek_id(body: &[u8]) -> Value {
    if body.len() > MAX_REQUEST_BYTES {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut obj)) => obj.remove("id").unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Seconds since the epoch, as Python's `time.time()`.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `{"status":"ok","time":..., ...fields..., "id": id}`.
///
/// Circus quirk kept on purpose: a `status` key in `fields` (the state
/// returned by `status <name>`) replaces "ok" in place; an `id` key in
/// `fields` is overridden by the request id.
pub fn ok_reply(id: &Value, fields: Map<String, Value>) -> Vec<u8> {
    ok_reply_at(id, fields, now_epoch())
}

/// [`ok_reply`] with an explicit timestamp (deterministic tests).
pub fn ok_reply_at(id: &Value, mut fields: Map<String, Value>, time: f64) -> Vec<u8> {
    let status = fields
        .remove("status")
        .unwrap_or_else(|| Value::String("ok".to_owned()));
    let time = fields.remove("time").unwrap_or_else(|| time_value(time));
    fields.remove("id");
    let mut entries: Vec<(&str, &Value)> = Vec::with_capacity(fields.len() + 3);
    entries.push(("status", &status));
    entries.push(("time", &time));
    entries.extend(fields.iter().map(|(k, v)| (k.as_str(), v)));
    entries.push(("id", id));
    encode_ordered(&entries)
}

/// `{"status":"error","reason":..,"tb":null,"time":..,"errno":..,"id":..}`.
pub fn error_reply(id: &Value, err: &CommandError) -> Vec<u8> {
    error_reply_at(id, err, now_epoch())
}

/// [`error_reply`] with an explicit timestamp (deterministic tests).
pub fn error_reply_at(id: &Value, err: &CommandError, time: f64) -> Vec<u8> {
    let status = Value::String("error".to_owned());
    let reason = Value::String(err.reason.clone());
    let time = time_value(time);
    let errno = Value::from(err.errno.code());
    let entries: [(&str, &Value); 6] = [
        ("status", &status),
        ("reason", &reason),
        ("tb", &Value::Null),
        ("time", &time),
        ("errno", &errno),
        ("id", id),
    ];
    encode_ordered(&entries)
}

fn time_value(time: f64) -> Value {
    serde_json::Number::from_f64(time)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Serializes key/value pairs in exactly the given order, whatever the
/// `serde_json` map implementation (so the top-level order matches Circus
/// even without `preserve_order`; nested objects need that feature).
fn encode_ordered(entries: &[(&str, &Value)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::new(&mut out);
    let result = (|| {
        let mut map = ser.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    })();
    match result {
        Ok(()) => out,
        // Serializing a `Value` into a Vec cannot fail in practice; never panic.
        Err(_) => {
            br#"{"status":"error","reason":"reply encoding failed","tb":null,"errno":5,"id":null}"#.to_vec()
        }
    }
}

// ---------------------------------------------------------------------------
// Property helpers for command implementations. All return `Ok(None)` when the
// property is absent or null, and an errno-3 error when it has the wrong type.

/// An optional string property.
pub fn prop_str(props: &Map<String, Value>, name: &str) -> Result<Option<String>, CommandError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CommandError::message(format!("'{name}' isn't a string"))),
    }
}

/// A required string property: missing → "message invalid 'X' is missing".
pub fn prop_required_str(props: &Map<String, Value>, name: &str) -> Result<String, CommandError> {
    prop_str(props, name)?.ok_or_else(|| CommandError::missing_property(name))
}

/// A boolean property. Accepts JSON booleans, 0/1 numbers and the strings
/// circusctl sometimes sends ("true"/"false", "1"/"0", "yes"/"no", "on"/"off",
/// case-insensitive).
pub fn prop_bool(props: &Map<String, Value>, name: &str) -> Result<Option<bool>, CommandError> {
    let invalid = || CommandError::message(format!("'{name}' isn't a valid boolean"));
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(invalid()),
        },
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "y" => Ok(Some(true)),
            "false" | "0" | "no" | "off" | "n" => Ok(Some(false)),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

/// An integer property: a JSON integer, an integral float, or an integer string.
pub fn prop_int(props: &Map<String, Value>, name: &str) -> Result<Option<i64>, CommandError> {
    let invalid = || CommandError::message(format!("'{name}' isn't an integer"));
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(invalid()),
                }
            }
        }
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// A numeric property: a JSON number or a numeric string.
pub fn prop_f64(props: &Map<String, Value>, name: &str) -> Result<Option<f64>, CommandError> {
    let invalid = || CommandError::message(format!("'{name}' isn't a number"));
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(invalid),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

/// A list-of-strings property (e.g. `get`'s `keys`). A single string is
/// accepted as a one-element list.
pub fn prop_str_list(props: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, CommandError> {
    let invalid = || CommandError::message(format!("'{name}' should be a list of strings"));
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn err_of(body: &[u8]) -> (Value, CommandError) {
        parse_request(body).expect_err("expected an error")
    }

    #[test]
    fn parses_full_request() {
        let req = parse_request(
            br#"{"command":"NumWatchers","properties":{"name":"a"},"id":"abc","msg_type":"cast"}"#,
        )
        .unwrap();
        assert_eq!(req.command, "numwatchers");
        assert_eq!(req.id, json!("abc"));
        assert_eq!(req.properties, props(json!({"name":"a"})));
        assert!(req.cast);
    }

    #[test]
    fn defaults_id_properties_and_cast() {
        let req = parse_request(br#"{"command":"list"}"#).unwrap();
        assert_eq!(req.id, Value::Null);
        assert!(req.properties.is_empty());
        assert!(!req.cast);
        let req =
            parse_request(br#" {"command":"list","properties":null,"id":5,"msg_type":"call"} "#).unwrap();
        assert_eq!(req.id, json!(5));
        assert!(req.properties.is_empty());
        assert!(!req.cast);
    }

    #[test]
    fn id_is_echoed_verbatim_whatever_its_type() {
        for id in [json!(1.5), json!([1, 2]), json!({"a": 1}), json!(true), json!(-7)] {
            let body = serde_json::to_vec(&json!({"command": "x", "id": id})).unwrap();
            assert_eq!(parse_request(&body).unwrap().id, id);
        }
    }

    #[test]
    fn rejects_empty_and_whitespace() {
        for body in [&b""[..], b"   ", b"\n\t "] {
            let (id, e) = err_of(body);
            assert_eq!(id, Value::Null);
            assert_eq!(e.errno, Errno::InvalidJson);
        }
    }

    #[test]
    fn rejects_non_utf8_and_non_json() {
        let (_, e) = err_of(b"\xff\xfe{");
        assert_eq!(e, CommandError::invalid_json());
        let (id, e) = err_of(b"{not json");
        assert_eq!(id, Value::Null);
        assert_eq!(e.errno, Errno::InvalidJson);
        assert_eq!(e.reason, "json invalid");
    }

    #[test]
    fn rejects_non_objects() {
        for body in [&b"[1,2]"[..], b"42", b"\"list\"", b"null", b"true"] {
            let (id, e) = err_of(body);
            assert_eq!(id, Value::Null);
            assert_eq!(e.errno, Errno::InvalidJson, "{body:?}");
        }
    }

    #[test]
    fn missing_or_bad_command() {
        let (id, e) = err_of(br#"{}"#);
        assert_eq!(id, Value::Null);
        assert_eq!(e.errno, Errno::MessageError);
        assert_eq!(e.reason, "message invalid 'command' is missing");
        let (id, e) = err_of(br#"{"id":"q","command":null}"#);
        assert_eq!(id, json!("q"));
        assert_eq!(e.reason, "message invalid 'command' is missing");
        let (id, e) = err_of(br#"{"id":3,"command":["list"]}"#);
        assert_eq!(id, json!(3));
        assert_eq!(e.errno, Errno::MessageError);
    }

    #[test]
    fn bad_properties() {
        for p in ["[]", "[1]", "\"x\"", "1", "true"] {
            let body = format!(r#"{{"command":"list","id":"i","properties":{p}}}"#);
            let (id, e) = err_of(body.as_bytes());
            assert_eq!(id, json!("i"));
            assert_eq!(e.errno, Errno::MessageError);
            assert_eq!(e.reason, "'properties' property should be an object");
        }
    }

    #[test]
    fn size_limit() {
        let pad = "x".repeat(MAX_REQUEST_BYTES);
        let body = format!(r#"{{"command":"list","id":1,"pad":"{pad}"}}"#);
        let (id, e) = err_of(body.as_bytes());
        assert_eq!(id, Value::Null);
        assert_eq!(e.errno, Errno::MessageError);
        assert!(e.reason.starts_with("message too large"), "{}", e.reason);
        // Exactly at the limit is accepted.
        let head = r#"{"command":"list","pad":""#;
        let n = MAX_REQUEST_BYTES - head.len() - 2;
        let body = format!("{head}{}\"}}", "y".repeat(n));
        assert_eq!(body.len(), MAX_REQUEST_BYTES);
        assert!(parse_request(body.as_bytes()).is_ok());
    }

    #[test]
    fn peek_id_is_best_effort() {
        assert_eq!(peek_id(br#"{"id":"z","command":3}"#), json!("z"));
        assert_eq!(peek_id(b"[1]"), Value::Null);
        assert_eq!(peek_id(b"garbage"), Value::Null);
    }

    #[test]
    fn ok_reply_key_order_and_values() {
        let fields = props(json!({"watchers": ["a", "b"], "zzz": 1, "aaa": 2}));
        let out = ok_reply_at(&json!("abc"), fields, 1.5);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"status":"ok","time":1.5,"watchers":["a","b"],"zzz":1,"aaa":2,"id":"abc"}"#
        );
    }

    #[test]
    fn ok_reply_status_quirk_and_id_override() {
        let fields = props(json!({"status": "active", "id": "bogus"}));
        let out = ok_reply_at(&json!(7), fields, 2.0);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"status":"active","time":2.0,"id":7}"#
        );
    }

    #[test]
    fn ok_reply_real_time() {
        let out = ok_reply(&Value::Null, Map::new());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["status"], "ok");
        assert!(v["time"].as_f64().unwrap() > 1.6e9);
        assert_eq!(v["id"], Value::Null);
    }

    #[test]
    fn error_reply_shape() {
        let out = error_reply_at(&json!("x1"), &CommandError::unknown_command("nope"), 3.25);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"status":"error","reason":"unknown command: 'nope'","tb":null,"time":3.25,"errno":2,"id":"x1"}"#
        );
        let v: Value =
            serde_json::from_slice(&error_reply(&Value::Null, &CommandError::invalid_json())).unwrap();
        assert_eq!(v["errno"], 1);
        assert_eq!(v["reason"], "json invalid");
    }

    #[test]
    fn errno_codes_and_constructors() {
        assert_eq!(Errno::NotSpecified.code(), 0);
        assert_eq!(Errno::BadMsgDataError.code(), 6);
        assert_eq!(CommandError::message("m").errno, Errno::MessageError);
        assert_eq!(CommandError::command("c").errno, Errno::CommandError);
        assert_eq!(CommandError::os("o").errno, Errno::OsError);
        assert_eq!(CommandError::bad_msg_data("b").errno, Errno::BadMsgDataError);
        assert_eq!(
            CommandError::missing_property("keys").reason,
            "message invalid 'keys' is missing"
        );
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(CommandError::from(io).errno, Errno::OsError);
        assert_eq!(
            CommandError::unknown_command("x").to_string(),
            "unknown command: 'x' (errno 2)"
        );
    }

    #[test]
    fn string_props() {
        let p = props(json!({"name": "a", "n": 1, "z": null}));
        assert_eq!(prop_str(&p, "name").unwrap(), Some("a".into()));
        assert_eq!(prop_str(&p, "missing").unwrap(), None);
        assert_eq!(prop_str(&p, "z").unwrap(), None);
        assert_eq!(prop_str(&p, "n").unwrap_err().reason, "'n' isn't a string");
        assert_eq!(prop_required_str(&p, "name").unwrap(), "a");
        let e = prop_required_str(&p, "cmd").unwrap_err();
        assert_eq!(e.errno, Errno::MessageError);
        assert_eq!(e.reason, "message invalid 'cmd' is missing");
    }

    #[test]
    fn bool_props() {
        let p = props(json!({
            "t": true, "f": false, "st": "true", "sf": "False", "s1": "1", "s0": "0",
            "n1": 1, "n0": 0, "bad": "maybe", "n2": 2, "list": []
        }));
        for (k, want) in [
            ("t", true),
            ("f", false),
            ("st", true),
            ("sf", false),
            ("s1", true),
            ("s0", false),
            ("n1", true),
            ("n0", false),
        ] {
            assert_eq!(prop_bool(&p, k).unwrap(), Some(want), "{k}");
        }
        assert_eq!(prop_bool(&p, "absent").unwrap(), None);
        for k in ["bad", "n2", "list"] {
            assert_eq!(
                prop_bool(&p, k).unwrap_err().reason,
                format!("'{k}' isn't a valid boolean")
            );
        }
    }

    #[test]
    fn int_props() {
        let p =
            props(json!({"a": 3, "b": "42", "c": " -7 ", "d": 2.0, "e": 2.5, "f": "x", "g": [1], "h": true}));
        assert_eq!(prop_int(&p, "a").unwrap(), Some(3));
        assert_eq!(prop_int(&p, "b").unwrap(), Some(42));
        assert_eq!(prop_int(&p, "c").unwrap(), Some(-7));
        assert_eq!(prop_int(&p, "d").unwrap(), Some(2));
        assert_eq!(prop_int(&p, "absent").unwrap(), None);
        for k in ["e", "f", "g", "h"] {
            let e = prop_int(&p, k).unwrap_err();
            assert_eq!(e.errno, Errno::MessageError);
            assert_eq!(e.reason, format!("'{k}' isn't an integer"));
        }
    }

    #[test]
    fn f64_props() {
        let p = props(json!({"a": 1.5, "b": "2.25", "c": 3, "d": "nan", "e": "x", "f": {}}));
        assert_eq!(prop_f64(&p, "a").unwrap(), Some(1.5));
        assert_eq!(prop_f64(&p, "b").unwrap(), Some(2.25));
        assert_eq!(prop_f64(&p, "c").unwrap(), Some(3.0));
        assert_eq!(prop_f64(&p, "absent").unwrap(), None);
        for k in ["d", "e", "f"] {
            assert_eq!(
                prop_f64(&p, k).unwrap_err().reason,
                format!("'{k}' isn't a number")
            );
        }
    }

    #[test]
    fn str_list_props() {
        let p = props(json!({"keys": ["a", "b"], "one": "c", "bad": [1], "obj": {}}));
        assert_eq!(
            prop_str_list(&p, "keys").unwrap(),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(prop_str_list(&p, "one").unwrap(), Some(vec!["c".into()]));
        assert_eq!(prop_str_list(&p, "absent").unwrap(), None);
        assert!(prop_str_list(&p, "bad").is_err());
        assert!(prop_str_list(&p, "obj").is_err());
    }
}
