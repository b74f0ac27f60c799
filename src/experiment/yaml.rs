//! Operations on YAML trees: deep merge, dotted-path overrides, `${VAR}` substitution.

use serde_yaml::{Mapping, Value};

/// Merges `top` over `base`: mappings merge key by key, recursively; anything else in `top`
/// replaces what `base` had (an explicit `null` included).
pub fn deep_merge(base: &mut Value, top: &Value) {
    match (base, top) {
        (Value::Mapping(b), Value::Mapping(t)) => {
            for (k, v) in t {
                match b.get_mut(k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Sets `a.b.c` to `value`, creating mappings on the way. Fails when a step of the path is
/// not a mapping.
pub fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("`{path}` is not a dotted key path"));
    }
    let mut node = root;
    for (i, key) in keys.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err(format!("`{}` is not a mapping", keys[..i].join(".")));
        };
        let key = Value::String(key.to_string());
        if i + 1 == keys.len() {
            map.insert(key, value);
            return Ok(());
        }
        node = map.entry(key).or_insert(Value::Null);
    }
    unreachable!("the loop returns at the last key")
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string of the tree. On an unset
/// variable without default, returns (variable, dotted key where it was used).
pub fn substitute_env(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    substitute_at(value, lookup, &mut Vec::new())
}

fn substitute_at(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) => {
            *s = expand(s, lookup).map_err(|var| (var, path.join(".")))?;
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.as_str().unwrap_or("?").to_string());
                substitute_at(v, lookup, path)?;
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                substitute_at(v, lookup, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands the `${...}` references of one string; returns the first unset variable.
fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match lookup(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(v) => out.push_str(&v),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn merge_is_deep_for_mappings_and_replaces_the_rest() {
        let mut base = y("a: {b: 1, c: [1, 2]}\nd: x");
        deep_merge(&mut base, &y("a: {c: [3], e: 5}\nd: null"));
        assert_eq!(base, y("a: {b: 1, c: [3], e: 5}\nd: null"));
    }

    #[test]
    fn set_path_creates_and_refuses_scalars_on_the_way() {
        let mut v = y("train: {epochs: 3}");
        set_path(&mut v, "train.lr.base_lr", y("0.1")).unwrap();
        assert_eq!(v, y("train: {epochs: 3, lr: {base_lr: 0.1}}"));
        assert_eq!(
            set_path(&mut v, "train.epochs.x", y("1")).unwrap_err(),
            "`train.epochs` is not a mapping"
        );
        assert!(set_path(&mut v, "train..x", y("1")).is_err());
    }

    #[test]
    fn env_references_expand_with_defaults_and_report_the_key() {
        let lookup = |name: &str| (name == "ROOT").then(|| "/data".to_string());
        let mut v = y("data: {train: '${ROOT}/train', val: '${OTHER:-/tmp}/val'}");
        substitute_env(&mut v, &lookup).unwrap();
        assert_eq!(v, y("data: {train: /data/train, val: /tmp/val}"));
        let mut bad = y("runs: {a: {data: {train: '${MISSING}/x'}}}");
        assert_eq!(
            substitute_env(&mut bad, &lookup).unwrap_err(),
            ("MISSING".into(), "runs.a.data.train".into())
        );
    }
}
