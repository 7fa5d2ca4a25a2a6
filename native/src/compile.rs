//! A definition's conditions (its JSON) compiled to an expression tree, as
//! `conditions.CompiledAudience._rows` builds its closures: AND binds tighter than OR.

use std::collections::HashMap;

use pyo3::PyResult;
use serde_json::Value as J;

use crate::ops::{holds, Op};
use crate::value::{Reader, Source, Val};

#[derive(Debug)]
pub enum Node {
    /// `native`: the index of the audience this trait key names when the core evaluates it
    /// too (its membership may have changed earlier in the same call).
    Trait { source: Source, key: String, op: Op, operands: Vec<Val>, native: Option<usize> },
    Member { key: String, member: bool, native: Option<usize> },
    All(Vec<Node>),
    AnyOf(Vec<Node>),
    Not(Box<Node>),
}

/// Memberships decided earlier in the current call, by core index (not yet written back
/// to the profile: Python applies the changes once the call returns).
pub type Overlay = [Option<bool>];

impl Node {
    pub fn holds(&self, r: &Reader<'_>, overlay: &Overlay) -> PyResult<bool> {
        Ok(match self {
            Node::Trait { source, key, op, operands, native } => {
                let fresh = native.and_then(|i| overlay[i]);
                let x = match fresh {
                    Some(member) if *source == Source::Any => Val::Bool(member),
                    _ => r.trait_value(*source, key)?,
                };
                holds(*op, operands, &x)
            }
            Node::Member { key, member, native } => {
                let is = match native.and_then(|i| overlay[i]) {
                    Some(m) => m,
                    None => r.member(key)?,
                };
                is == *member
            }
            Node::All(nodes) => {
                for n in nodes {
                    if !n.holds(r, overlay)? {
                        return Ok(false);
                    }
                }
                true
            }
            Node::AnyOf(nodes) => {
                for n in nodes {
                    if n.holds(r, overlay)? {
                        return Ok(true);
                    }
                }
                false
            }
            Node::Not(n) => !n.holds(r, overlay)?,
        })
    }

    /// Point membership and trait reads at the audiences of the same core.
    pub fn resolve(&mut self, index: &HashMap<String, usize>) {
        match self {
            Node::Trait { key, native, .. } | Node::Member { key, native, .. } => {
                *native = index.get(key.as_str()).copied();
            }
            Node::All(nodes) | Node::AnyOf(nodes) => nodes.iter_mut().for_each(|n| n.resolve(index)),
            Node::Not(n) => n.resolve(index),
        }
    }
}

/// The expression of an audience definition, or why the core does not evaluate it.
pub fn audience(d: &J) -> Result<Node, String> {
    match d.get("kind").and_then(J::as_str) {
        Some("audience") => {}
        other => return Err(format!("kind {other:?} (computed traits are not ported yet)")),
    }
    let rows = d
        .get("conditions")
        .and_then(J::as_array)
        .ok_or("no conditions")?;
    rows_of(rows)
}

fn rows_of(rows: &[J]) -> Result<Node, String> {
    let mut groups: Vec<Vec<Node>> = vec![vec![]];
    for (i, row) in rows.iter().enumerate() {
        if i > 0 && row.get("join").and_then(J::as_str) == Some("or") {
            groups.push(vec![]);
        }
        groups.last_mut().unwrap().push(row_of(row)?);
    }
    let mut ors: Vec<Node> = groups
        .into_iter()
        .map(|mut g| if g.len() == 1 { g.pop().unwrap() } else { Node::All(g) })
        .collect();
    Ok(if ors.len() == 1 { ors.pop().unwrap() } else { Node::AnyOf(ors) })
}

fn row_of(row: &J) -> Result<Node, String> {
    let o = row.as_object().ok_or("a condition row is not an object")?;
    if o.contains_key("event") {
        return Err("event conditions are not ported yet".into());
    }
    if o.contains_key("users") {
        return Err("users conditions are not ported yet".into());
    }
    if let Some(group) = o.get("group") {
        let inner = rows_of(group.as_array().ok_or("group is not a list")?)?;
        let negate = o.get("negate").and_then(J::as_bool).unwrap_or(false);
        return Ok(if negate { Node::Not(Box::new(inner)) } else { inner });
    }
    if let Some(a) = o.get("audience") {
        let key = a.as_str().ok_or("audience is not a string")?.to_string();
        let member = o.get("member").and_then(J::as_bool).unwrap_or(true);
        return Ok(Node::Member { key, member, native: None });
    }
    if let Some(t) = o.get("trait") {
        return trait_row(t.as_str().ok_or("trait is not a string")?, o);
    }
    Err("unknown condition row".into())
}

fn trait_row(path: &str, o: &serde_json::Map<String, J>) -> Result<Node, String> {
    if path.contains('.') || path.contains('\\') {
        return Err(format!("nested trait path {path:?} is not ported yet"));
    }
    if !matches!(o.get("value_from"), None | Some(J::Null)) {
        return Err("value_from references are not ported yet".into());
    }
    let source = match o.get("source").and_then(J::as_str).unwrap_or("any") {
        "any" => Source::Any,
        "custom" => Source::Custom,
        "computed" => Source::Computed,
        s => return Err(format!("unknown trait source {s}")),
    };
    let name = o.get("operator").and_then(J::as_str).ok_or("no operator")?;
    let op = Op::parse(name).ok_or_else(|| format!("operator {name} is not ported yet"))?;
    let value = o.get("value").unwrap_or(&J::Null);
    if !exact_numbers(value) {
        // serde_json reads integers beyond 64 bits as floats: Python would compare the
        // exact integer
        return Err("a numeric constant beyond 2^53 that is not a 64-bit integer".into());
    }
    let scalar = |v: &J| matches!(v, J::Null | J::Bool(_) | J::Number(_) | J::String(_));
    let operands = match op {
        Op::Exists | Op::NotExists => vec![],
        Op::Equals | Op::NotEquals => {
            if !scalar(value) || value.is_null() {
                return Err(format!("operator {name} with a non-scalar value"));
            }
            vec![Val::from_json(value)]
        }
        Op::EqualsAnyOf | Op::NoneOf => {
            let items: Vec<&J> = match value {
                J::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if !items.iter().all(|v| scalar(v)) {
                return Err(format!("operator {name} with non-scalar values"));
            }
            items.into_iter().map(Val::from_json).collect()
        }
        Op::Less | Op::Greater | Op::AtMost | Op::AtLeast => {
            // only numeric constants (`operators._order`'s first branch); dates are not
            // ported yet
            let v = Val::from_json(value);
            if crate::ops::as_number(&v).is_none() {
                return Err(format!("operator {name} with a non-numeric value"));
            }
            vec![v]
        }
    };
    Ok(Node::Trait { source, key: path.to_string(), op, operands, native: None })
}

fn exact_numbers(v: &J) -> bool {
    match v {
        J::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.abs() < 9_007_199_254_740_992.0)
        }
        J::Array(a) => a.iter().all(exact_numbers),
        _ => true,
    }
}
