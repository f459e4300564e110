//! A JSON tool over a large file, with serde_json (what jq-like tools and most Rust
//! services use): parse FILE into a `Value` tree, rebuild each record of its top-level
//! array with derived fields (a projection and an aggregate, as a `jq` filter would),
//! serialise the result, and parse that back.
//!
//! Usage: json FILE. The check is a digest of the serialised result.

use serde_json::{Map, Value, json};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: json FILE");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).expect("a readable file");
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    drop(text);
    let records = doc.as_array().expect("a top-level array");
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let tags: Vec<&str> = r["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let total: f64 = r["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["price"].as_f64().unwrap_or(0.0) * i["qty"].as_f64().unwrap_or(0.0))
                    .sum()
            })
            .unwrap_or(0.0);
        let mut m = Map::new();
        m.insert("id".into(), r["id"].clone());
        m.insert(
            "who".into(),
            json!(format!(
                "{} <{}>",
                r["name"].as_str().unwrap_or(""),
                r["email"].as_str().unwrap_or("")
            )),
        );
        m.insert("tags".into(), json!(tags.join(",")));
        m.insert("total".into(), json!((total * 100.0).round() / 100.0));
        m.insert("city".into(), r["address"]["city"].clone());
        out.push(Value::Object(m));
    }
    drop(doc);
    let s = serde_json::to_string(&Value::Array(out)).expect("serialisable");
    let back: Value = serde_json::from_str(&s).expect("its own output parses");
    let n = back.as_array().map_or(0, Vec::len) as u64;
    ngmalloc_bench_rust::report(ngmalloc_bench_rust::fnv(n, s.as_bytes()));
}
