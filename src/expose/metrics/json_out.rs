//! A small JSON writer into one byte buffer: punctuation and commas by hand, scalars through
//! `serde_json` (its string escaping and number formatting), so the output is exactly what
//! serialising a `serde_json::Value` gives, without building the tree first.

use serde::Serialize;

/// Appends JSON to a `Vec<u8>`; keys and values are written in the order given.
pub(super) struct JsonOut<'a> {
    buf: &'a mut Vec<u8>,
    /// No member or element written yet in the innermost object or array.
    first: bool,
}

impl<'a> JsonOut<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        JsonOut { buf, first: true }
    }

    /// A writer continuing a document inside an object or array: `first` when nothing has been
    /// written in it yet.
    pub fn continuing(buf: &'a mut Vec<u8>, first: bool) -> Self {
        JsonOut { buf, first }
    }

    /// The comma before a member or element, unless it is the first.
    fn separate(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    /// `{`, as a value.
    pub fn open_object(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }

    /// `}`.
    pub fn close_object(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }

    /// `[`, as a value.
    pub fn open_array(&mut self) {
        self.buf.push(b'[');
        self.first = true;
    }

    /// `]`.
    pub fn close_array(&mut self) {
        self.buf.push(b']');
        self.first = false;
    }

    /// `"key":` of the next member. Keys with nothing to escape (all of ours, and the usual
    /// NAME) are copied as they are.
    pub fn key(&mut self, key: &str) {
        self.separate();
        if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.push(b'"');
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.extend_from_slice(b"\":");
        } else {
            self.scalar(key);
            self.buf.push(b':');
        }
    }

    /// Before an array element that is not written by [`JsonOut::value`].
    pub fn element(&mut self) {
        self.separate();
    }

    /// A member whose value is a scalar (string, number, bool, or an `Option` of one: `null`).
    pub fn member(&mut self, key: &str, value: impl Serialize) {
        self.key(key);
        self.scalar(value);
    }

    /// `"key":{`.
    pub fn member_object(&mut self, key: &str) {
        self.key(key);
        self.open_object();
    }

    /// `"key":[`.
    pub fn member_array(&mut self, key: &str) {
        self.key(key);
        self.open_array();
    }

    /// `null`, as a value.
    pub fn null(&mut self) {
        self.buf.extend_from_slice(b"null");
        self.first = false;
    }

    /// A scalar value. Serialising a string, number, bool or `Option` of one into a `Vec`
    /// cannot fail; a non-finite float is `null`, as in a `Value`.
    pub fn scalar(&mut self, value: impl Serialize) {
        let _ = serde_json::to_writer(&mut *self.buf, &value);
        self.first = false;
    }
}

/// `(key, value)` pairs in the order a `serde_json::Map` (a `BTreeMap`) keeps them: by key,
/// and of equal keys the last one inserted.
pub(super) fn sorted_members<K: AsRef<str>, V>(pairs: Vec<(K, V)>) -> Vec<(K, V)> {
    // Sorted by key and, among equal keys, by position (what a stable sort keeps), without a
    // stable sort's merge buffers: about twice as fast at 10,000 NAMEs. Then the last of each
    // run of equal keys wins.
    let mut pairs: Vec<(usize, (K, V))> = pairs.into_iter().enumerate().collect();
    pairs.sort_unstable_by(|a, b| (a.1 .0.as_ref(), a.0).cmp(&(b.1 .0.as_ref(), b.0)));
    let mut out: Vec<(K, V)> = Vec::with_capacity(pairs.len());
    for (_, pair) in pairs {
        match out.last_mut() {
            Some(last) if last.0.as_ref() == pair.0.as_ref() => *last = pair,
            _ => out.push(pair),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn written(f: impl FnOnce(&mut JsonOut)) -> String {
        let mut buf = Vec::new();
        f(&mut JsonOut::new(&mut buf));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn scalars_as_serde_json_writes_them() {
        let mut all = String::new();
        for c in (0u32..0x80).filter_map(char::from_u32) {
            all.push(c);
        }
        all.push_str("é€\u{2028}\u{10ffff}");
        let values: Vec<Value> = vec![
            json!(all),
            json!(0.1),
            json!(1.0),
            json!(1e21),
            json!(-0.0),
            json!(f64::NAN),
            json!(f64::INFINITY),
            json!(u64::MAX),
            json!(true),
            json!(null),
        ];
        assert_eq!(
            written(|o| o.scalar(&all)),
            serde_json::to_string(&values[0]).unwrap()
        );
        let floats = [0.1, 1.0, 1e21, -0.0, f64::NAN, f64::INFINITY];
        for (f, v) in floats.iter().zip(&values[1..7]) {
            assert_eq!(written(|o| o.scalar(f)), v.to_string(), "{f}");
        }
        assert_eq!(written(|o| o.scalar(u64::MAX)), values[7].to_string());
        assert_eq!(written(|o| o.scalar(true)), "true");
        assert_eq!(written(|o| o.scalar(None::<f64>)), "null");
    }

    #[test]
    fn keys_as_serde_json_writes_them() {
        for key in [
            "plain",
            "n-00001",
            "quote\"",
            "back\\slash",
            "new\nline",
            "\u{7f}é",
            "",
        ] {
            let text = written(|o| {
                o.open_object();
                o.member(key, 1);
                o.close_object();
            });
            assert_eq!(text, json!({ key: 1 }).to_string());
        }
    }

    #[test]
    fn nesting_and_commas() {
        let text = written(|o| {
            o.open_object();
            o.member("a", 1);
            o.member_array("b");
            o.element();
            o.open_object();
            o.close_object();
            o.element();
            o.scalar(2);
            o.close_array();
            o.member_object("c");
            o.key("d");
            o.null();
            o.close_object();
            o.close_object();
        });
        assert_eq!(text, r#"{"a":1,"b":[{},2],"c":{"d":null}}"#);
        let want = json!({"a": 1, "b": [{}, 2], "c": {"d": null}});
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
    }

    #[test]
    fn members_sorted_like_a_map() {
        let pairs = vec![("b", 1), ("a", 2), ("b", 3), ("10", 4), ("2", 5)];
        let map: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let sorted = sorted_members(pairs);
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(sorted.iter().map(|p| p.0).collect::<Vec<_>>(), keys);
        assert_eq!(sorted, vec![("10", 4), ("2", 5), ("a", 2), ("b", 3)]);
    }
}
