//! A definition's conditions (its JSON) compiled to an expression tree, as
//! `conditions.CompiledAudience._rows` builds its closures: AND binds tighter than OR.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyString;
use serde_json::Value as J;

use crate::events::{funnel as funnel_leaf, leaf, EventLeaf, FunnelLeaf};
use crate::ops::{holds, Op};
use crate::value::{Reader, Source, Val};

#[derive(Debug)]
pub enum Node {
    /// `slot`: the read this trait is (one per distinct source and key of the core, read
    /// once per call); `native`: the index of the audience this key names when the core
    /// evaluates it too (its membership may have changed earlier in the same call).
    Trait {
        source: Source,
        key: String,
        op: Op,
        operands: Vec<Val>,
        slot: usize,
        native: Option<usize>,
    },
    /// `slot`: the membership read of `key` (one per distinct audience key).
    Member {
        key: String,
        member: bool,
        slot: usize,
        native: Option<usize>,
    },
    /// the answer of the audience's event row `i` (`Call::truths`)
    Slot(usize),
    All(Vec<Node>),
    AnyOf(Vec<Node>),
    Not(Box<Node>),
}

/// What one `Core.evaluate` call has read and decided so far.
pub struct Call<'a, 'py> {
    pub reader: &'a Reader<'py>,
    pub traits: &'a Tables,
    /// memberships decided earlier in the call, by core index (not written back to the
    /// profile: Python applies the changes once the call returns)
    pub overlay: Vec<Option<bool>>,
    /// computed-trait values decided earlier in the call, by core index (the same)
    pub trait_overlay: Vec<Option<Val>>,
    pub trait_reads: Vec<Option<Val>>,
    pub member_reads: Vec<Option<bool>>,
    /// the event rows' answers of the audience being evaluated
    pub truths: Vec<bool>,
}

impl Call<'_, '_> {
    fn trait_value(&mut self, slot: usize) -> PyResult<Val> {
        if let Some(v) = &self.trait_reads[slot] {
            return Ok(v.clone());
        }
        let (source, key) = &self.traits.traits[slot];
        let v = self
            .reader
            .trait_value(*source, key.bind(self.reader.py()))?;
        self.trait_reads[slot] = Some(v.clone());
        Ok(v)
    }

    /// `ProfileRecord.trait` (source any) with the computed value `computed` decided in
    /// this call: a membership of the key first, then it, then the custom trait.
    fn any_over(&mut self, slot: usize, computed: &Val) -> PyResult<Val> {
        let key = self.traits.traits[slot].1.bind(self.reader.py());
        self.reader.any_over(key, computed)
    }

    pub fn member(&mut self, slot: usize) -> PyResult<bool> {
        if let Some(m) = self.member_reads[slot] {
            return Ok(m);
        }
        let m = self
            .reader
            .member(self.traits.audiences[slot].bind(self.reader.py()))?;
        self.member_reads[slot] = Some(m);
        Ok(m)
    }
}

/// The distinct reads of a core's definitions, as interned Python strings (a dict lookup
/// with one hashes nothing).
#[derive(Default)]
pub struct Tables {
    pub traits: Vec<(Source, Py<PyString>)>,
    pub audiences: Vec<Py<PyString>>,
    trait_slots: HashMap<(Source, String), usize>,
    audience_slots: HashMap<String, usize>,
}

impl Tables {
    pub fn audience_slot(&mut self, py: Python<'_>, key: &str) -> usize {
        if let Some(&s) = self.audience_slots.get(key) {
            return s;
        }
        self.audiences
            .push(PyString::intern_bound(py, key).unbind());
        self.audience_slots
            .insert(key.to_string(), self.audiences.len() - 1);
        self.audiences.len() - 1
    }

    fn trait_slot(&mut self, py: Python<'_>, source: Source, key: &str) -> usize {
        if let Some(&s) = self.trait_slots.get(&(source, key.to_string())) {
            return s;
        }
        self.traits
            .push((source, PyString::intern_bound(py, key).unbind()));
        self.trait_slots
            .insert((source, key.to_string()), self.traits.len() - 1);
        self.traits.len() - 1
    }
}

impl Node {
    pub fn holds(&self, c: &mut Call<'_, '_>) -> PyResult<bool> {
        Ok(match self {
            Node::Trait {
                source,
                op,
                operands,
                slot,
                native,
                ..
            } => {
                let member = native.and_then(|i| c.overlay[i]);
                let computed = native.and_then(|i| c.trait_overlay[i].clone());
                let x = match (member, computed, source) {
                    (Some(m), _, Source::Any) => Val::Bool(m),
                    (None, Some(v), Source::Computed) => v,
                    (None, Some(v), Source::Any) => c.any_over(*slot, &v)?,
                    _ => c.trait_value(*slot)?,
                };
                holds(*op, operands, &x)
            }
            Node::Member {
                member,
                slot,
                native,
                ..
            } => {
                let is = match native.and_then(|i| c.overlay[i]) {
                    Some(m) => m,
                    None => c.member(*slot)?,
                };
                is == *member
            }
            Node::All(nodes) => {
                for n in nodes {
                    if !n.holds(c)? {
                        return Ok(false);
                    }
                }
                true
            }
            Node::AnyOf(nodes) => {
                for n in nodes {
                    if n.holds(c)? {
                        return Ok(true);
                    }
                }
                false
            }
            Node::Slot(i) => c.truths[*i],
            Node::Not(n) => !n.holds(c)?,
        })
    }

    /// Give every read its slot, and point reads of the core's own audiences at them.
    pub fn resolve(&mut self, py: Python<'_>, index: &HashMap<String, usize>, t: &mut Tables) {
        match self {
            Node::Trait {
                source,
                key,
                slot,
                native,
                ..
            } => {
                *slot = t.trait_slot(py, *source, key);
                *native = index.get(key.as_str()).copied();
            }
            Node::Member {
                key, slot, native, ..
            } => {
                *slot = t.audience_slot(py, key);
                *native = index.get(key.as_str()).copied();
            }
            Node::All(nodes) | Node::AnyOf(nodes) => {
                nodes.iter_mut().for_each(|n| n.resolve(py, index, t))
            }
            Node::Not(n) => n.resolve(py, index, t),
            Node::Slot(_) => {}
        }
    }
}

/// What the core evaluates for one definition.
pub enum Kind {
    Audience(Audience),
    /// a computed trait over an exact window (traits.rs)
    Trait(crate::traits::TraitDef),
}

/// An audience: its event rows (with state; none for conditions on traits and
/// memberships only) and the expression over them.
pub struct Audience {
    pub leaves: Vec<Leaf>,
    pub expr: Node,
}

pub enum Leaf {
    Times(EventLeaf),
    Funnel(FunnelLeaf),
}

/// One row's state: the times of a plain row, or a funnel's parents and children.
#[derive(Debug)]
pub enum LeafSt {
    Times(Vec<i64>),
    Funnel(Vec<i64>, Vec<i64>),
}

/// An audience's state, `CompiledAudience`'s layout: one slot per event row, None when
/// the row keeps nothing (the whole state None when no row does).
pub type AudienceSt = Option<Vec<Option<LeafSt>>>;

/// (a, b, funnel span) of each event row's window, in row order, as the Python engine
/// computed them; a computed trait's third is its grain, not a span.
pub type Windows = [(i64, i64, i64)];

/// A definition compiled, or why the core does not evaluate it. `windows`: its event
/// rows' windows (a computed trait: its own, one); `supports` passes none and only
/// checks the shape.
pub fn definition(d: &J, windows: Option<&Windows>) -> Result<Kind, String> {
    match d.get("kind").and_then(J::as_str) {
        Some("audience") => {}
        Some("computed_trait") => {
            let w = windows.and_then(|w| w.first()).copied();
            return crate::traits::compile(d, w).map(Kind::Trait);
        }
        Some(other) => return Err(format!("kind {other}")),
        None => return Err("no kind".into()),
    }
    let rows = d
        .get("conditions")
        .and_then(J::as_array)
        .ok_or("no conditions")?;
    let mut leaves = Leaves {
        leaves: vec![],
        windows,
    };
    let expr = rows_of(rows, &mut leaves)?;
    if let Some(w) = windows {
        if w.len() != leaves.leaves.len() {
            return Err(format!(
                "{} windows for {} event rows",
                w.len(),
                leaves.leaves.len()
            ));
        }
    }
    Ok(Kind::Audience(Audience {
        leaves: leaves.leaves,
        expr,
    }))
}

/// The event rows met so far, in `CompiledAudience._rows`'s order (depth first).
struct Leaves<'w> {
    leaves: Vec<Leaf>,
    windows: Option<&'w Windows>,
}

fn rows_of(rows: &[J], leaves: &mut Leaves<'_>) -> Result<Node, String> {
    let mut groups: Vec<Vec<Node>> = vec![vec![]];
    for (i, row) in rows.iter().enumerate() {
        if i > 0 && row.get("join").and_then(J::as_str) == Some("or") {
            groups.push(vec![]);
        }
        groups.last_mut().unwrap().push(row_of(row, leaves)?);
    }
    let mut ors: Vec<Node> = groups
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                g.pop().unwrap()
            } else {
                Node::All(g)
            }
        })
        .collect();
    Ok(if ors.len() == 1 {
        ors.pop().unwrap()
    } else {
        Node::AnyOf(ors)
    })
}

fn row_of(row: &J, leaves: &mut Leaves<'_>) -> Result<Node, String> {
    let o = row.as_object().ok_or("a condition row is not an object")?;
    if o.contains_key("event") {
        let n = leaves.leaves.len();
        let w = leaves
            .windows
            .and_then(|w| w.get(n).copied())
            .unwrap_or((0, 1, 1));
        let funnel = ["then", "then_not"]
            .iter()
            .any(|k| !matches!(o.get(*k), None | Some(J::Null)));
        let leaf = if funnel {
            Leaf::Funnel(funnel_leaf(o, w)?)
        } else {
            Leaf::Times(leaf(o, (w.0, w.1))?)
        };
        leaves.leaves.push(leaf);
        return Ok(Node::Slot(n));
    }
    if o.contains_key("users") {
        return Err("users conditions are not ported yet".into());
    }
    if let Some(group) = o.get("group") {
        let inner = rows_of(group.as_array().ok_or("group is not a list")?, leaves)?;
        let negate = o.get("negate").and_then(J::as_bool).unwrap_or(false);
        return Ok(if negate {
            Node::Not(Box::new(inner))
        } else {
            inner
        });
    }
    if let Some(a) = o.get("audience") {
        let key = a.as_str().ok_or("audience is not a string")?.to_string();
        let member = o.get("member").and_then(J::as_bool).unwrap_or(true);
        return Ok(Node::Member {
            key,
            member,
            slot: 0,
            native: None,
        });
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
    let operands = operands(op, name, value)?;
    Ok(Node::Trait {
        source,
        key: path.to_string(),
        op,
        operands,
        slot: 0,
        native: None,
    })
}

fn exact_numbers(v: &J) -> bool {
    match v {
        J::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.abs() < 9_007_199_254_740_992.0)
        }
        J::Array(a) => a.iter().all(exact_numbers),
        _ => true,
    }
}

/// The constants of `op` (`operators.compile_static`'s), or why they are not supported.
pub fn operands(op: Op, name: &str, value: &J) -> Result<Vec<Val>, String> {
    if !exact_numbers(value) {
        // serde_json reads integers beyond 64 bits as floats: Python would compare the
        // exact integer
        return Err("a numeric constant beyond 2^53 that is not a 64-bit integer".into());
    }
    let scalar = |v: &J| matches!(v, J::Null | J::Bool(_) | J::Number(_) | J::String(_));
    Ok(match op {
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
    })
}
