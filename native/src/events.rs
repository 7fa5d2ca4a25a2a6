//! One event row as `conditions.EventLeaf` evaluates it on its fast path: plain event
//! times (no trait-referencing or relative-date filter) in a window the lookback never
//! cuts short, counted and compared. State: the sorted times, of the ones that already
//! count only the newest `cap` (see `conditions.count_cap`).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use serde_json::Value as J;

use crate::ops::{holds, Op};
use crate::value::Val;

pub const INF: i64 = 1 << 62; // windows.INF
const EDGE_WALK: usize = 32; // conditions.EDGE_WALK

#[derive(Debug, Clone, Copy)]
enum CountOp {
    Ge,
    Gt,
    Eq,
    Ne,
    Le,
    Lt,
}

/// A `where` row against a constant on a top-level property.
#[derive(Debug)]
pub struct Filter {
    pub property: String,
    pub op: Op,
    pub operands: Vec<Val>,
}

/// A row's `count` compared, `performed` or not (`conditions.count_test` / `count_cap`).
#[derive(Debug)]
pub struct Count {
    op: CountOp,
    value: i64,
    cap: usize,
    performed: bool,
}

impl Count {
    fn of(row: &serde_json::Map<String, J>) -> Result<Count, String> {
        let count = row.get("count").and_then(J::as_object).ok_or("no count")?;
        let value = count
            .get("value")
            .and_then(J::as_i64)
            .ok_or("count value is not an integer")?;
        let op = match count.get("operator").and_then(J::as_str) {
            Some(">=") => CountOp::Ge,
            Some(">") => CountOp::Gt,
            Some("=") => CountOp::Eq,
            Some("!=") => CountOp::Ne,
            Some("<=") => CountOp::Le,
            Some("<") => CountOp::Lt,
            other => return Err(format!("count operator {other:?}")),
        };
        let cap = if matches!(op, CountOp::Ge | CountOp::Lt) {
            value
        } else {
            value + 1
        }
        .max(1);
        let performed = row.get("performed").and_then(J::as_bool).unwrap_or(true);
        Ok(Count {
            op,
            value,
            cap: cap as usize,
            performed,
        })
    }

    fn test(&self, n: i64) -> bool {
        let v = self.value;
        match self.op {
            CountOp::Ge => n >= v,
            CountOp::Gt => n > v,
            CountOp::Eq => n == v,
            CountOp::Ne => n != v,
            CountOp::Le => n <= v,
            CountOp::Lt => n < v,
        }
    }

    /// `holds`: the count compared, negated when not performed.
    fn truth(&self, n: i64) -> bool {
        self.test(n) == self.performed
    }
}

#[derive(Debug)]
pub struct EventLeaf {
    pub event: String,
    pub filters: Filters,
    a: i64,
    b: i64,
    count: Count,
    pub empty_truth: bool,
}

/// An event row without a funnel, or why the core does not evaluate it. `window`: (a, b)
/// of its `windows.Window`, computed by the Python engine.
pub fn leaf(row: &serde_json::Map<String, J>, window: (i64, i64)) -> Result<EventLeaf, String> {
    let (event, filters) = event_and_filters(row)?;
    let count = Count::of(row)?;
    let empty_truth = count.truth(0);
    Ok(EventLeaf {
        event: event.to_string(),
        filters,
        a: window.0,
        b: window.1,
        count,
        empty_truth,
    })
}

/// A funnel row (`then` / `then_not` a child event within `span` of each parent
/// occurrence), as `conditions.FunnelLeaf` with constant filters on both sides.
/// State: `[parents, children]`, each the sorted times (stored as `[ts, []]` entries).
#[derive(Debug)]
pub struct FunnelLeaf {
    pub event: String,
    pub child_event: String,
    pfilters: Filters,
    cfilters: Filters,
    a: i64,
    b: i64,
    span: i64,
    must: bool,
    count: Count,
    pub empty_truth: bool,
}

pub fn funnel(
    row: &serde_json::Map<String, J>,
    window: (i64, i64, i64),
) -> Result<FunnelLeaf, String> {
    let (step, must) = match (row.get("then"), row.get("then_not")) {
        (Some(s @ J::Object(_)), _) => (s, true),
        (_, Some(s @ J::Object(_))) => (s, false),
        _ => return Err("no funnel step".into()),
    };
    let where_of = |o: &J| {
        filters_of(
            o.get("where")
                .and_then(J::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        )
    };
    let count = Count::of(row)?;
    let empty_truth = count.truth(0);
    Ok(FunnelLeaf {
        event: row
            .get("event")
            .and_then(J::as_str)
            .ok_or("event is not a string")?
            .to_string(),
        child_event: step
            .get("event")
            .and_then(J::as_str)
            .ok_or("step event is not a string")?
            .to_string(),
        pfilters: where_of(&J::Object(row.clone()))?,
        cfilters: where_of(step)?,
        a: window.0,
        b: window.1,
        span: window.2,
        must,
        count,
        empty_truth,
    })
}

impl FunnelLeaf {
    pub fn intern(&mut self, py: Python<'_>) {
        self.pfilters.intern(py);
        self.cfilters.intern(py);
    }

    /// `prepare`: (stored as a parent, stored as a child).
    pub fn keeps(
        &self,
        name: &str,
        props: &Bound<'_, PyDict>,
        ts: i64,
        now: i64,
    ) -> PyResult<(bool, bool)> {
        let alive = ts.saturating_add(self.b) > now;
        let parent = name == self.event && self.b > self.a && alive && self.pfilters.hold(props)?;
        let child = name == self.child_event && alive && self.cfilters.hold(props)?;
        Ok((parent, child))
    }

    /// `FunnelLeaf.step` (both lists emptied: the caller drops the state).
    pub fn step(&self, parents: &mut Vec<i64>, children: &mut Vec<i64>, t: i64) -> (bool, i64) {
        let cut = t.saturating_sub(self.b);
        for entries in [&mut *parents, &mut *children] {
            let i = bisect_right(entries, cut);
            entries.drain(..i);
        }
        if parents.is_empty() && children.is_empty() {
            return (self.empty_truth, INF);
        }
        (
            self.count.truth(self.count_at(parents, children, t)),
            self.next_edge(parents, children, t),
        )
    }

    fn count_at(&self, parents: &[i64], children: &[i64], t: i64) -> i64 {
        let j = bisect_right(parents, t - self.a);
        let mut n = 0i64;
        for &tp in &parents[..j] {
            let deadline = tp.saturating_add(self.span);
            let k = bisect_right(children, tp);
            let found = children
                .get(k)
                .is_some_and(|&c| c <= deadline && !(self.must && c > t));
            if if self.must {
                found
            } else {
                t >= deadline && !found
            } {
                n += 1;
                if n as usize >= self.count.cap {
                    break;
                }
            }
        }
        n
    }

    fn next_edge(&self, parents: &[i64], children: &[i64], t: i64) -> i64 {
        let mut edge = INF;
        if let Some(&p0) = parents.first() {
            edge = p0.saturating_add(self.b);
            let j = bisect_right(parents, t - self.a);
            if j < parents.len() {
                edge = edge.min(parents[j] + self.a);
            }
            if !self.must {
                let k = bisect_right(parents, t.saturating_sub(self.span));
                if k < parents.len() {
                    edge = edge.min(parents[k].saturating_add(self.span));
                }
            }
        }
        if self.must {
            let k = bisect_right(children, t);
            if k < children.len() {
                edge = edge.min(children[k]);
            }
        }
        edge
    }
}

/// The `where` rows of an event condition or a computed trait: constants compared with
/// top-level properties (`filters.compile_static_filters`), or why they are not supported.
/// An event row's or a computed trait's `event` and its `where` filters compiled.
pub fn event_and_filters(d: &serde_json::Map<String, J>) -> Result<(&str, Filters), String> {
    let event = d
        .get("event")
        .and_then(J::as_str)
        .ok_or("event is not a string")?;
    let rows = d.get("where").and_then(J::as_array);
    Ok((event, filters_of(rows.map(Vec::as_slice).unwrap_or(&[]))?))
}

pub fn filters_of(rows: &[J]) -> Result<Filters, String> {
    let mut filters = vec![];
    for f in rows {
        let f = f.as_object().ok_or("a filter is not an object")?;
        let property = f.get("property").and_then(J::as_str).ok_or("no property")?;
        if property.contains('.') || property.contains('\\') {
            return Err(format!("nested property {property:?} is not ported yet"));
        }
        if !matches!(f.get("value_from"), None | Some(J::Null)) {
            return Err("filters with value_from are not ported yet".into());
        }
        let name = f.get("operator").and_then(J::as_str).ok_or("no operator")?;
        let op =
            Op::parse(name).ok_or_else(|| format!("filter operator {name} is not ported yet"))?;
        let operands = crate::compile::operands(op, name, f.get("value").unwrap_or(&J::Null))?;
        filters.push(Filter {
            property: property.to_string(),
            op,
            operands,
        });
    }
    Ok(Filters {
        list: filters,
        keys: vec![],
    })
}

/// An event's filters, with their property names interned once the core is built.
#[derive(Debug)]
pub struct Filters {
    pub list: Vec<Filter>,
    keys: Vec<Py<PyString>>, // one per filter
}

impl Filters {
    pub fn intern(&mut self, py: Python<'_>) {
        self.keys = self
            .list
            .iter()
            .map(|f| PyString::intern_bound(py, &f.property).unbind())
            .collect();
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every filter holds for the event's properties.
    pub fn hold(&self, props: &Bound<'_, PyDict>) -> PyResult<bool> {
        for (f, key) in self.list.iter().zip(&self.keys) {
            let x = match props.get_item(key.bind(props.py()))? {
                Some(v) => Val::from_py(&v),
                None => Val::Null,
            };
            if !holds(f.op, &f.operands, &x) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn bisect_right(st: &[i64], x: i64) -> usize {
    st.partition_point(|&v| v <= x)
}

impl EventLeaf {
    pub fn intern(&mut self, py: Python<'_>) {
        self.filters.intern(py);
    }

    /// `prepare`'s static part: the filters hold and the event can count at `now` or later.
    pub fn keeps(&self, props: &Bound<'_, PyDict>, ts: i64, now: i64) -> PyResult<bool> {
        if !(self.b > self.a && ts.saturating_add(self.b) > now) {
            return Ok(false);
        }
        self.filters.hold(props)
    }

    /// `insort`: after the equal times (also a funnel's parents and children).
    pub fn insert(st: &mut Vec<i64>, ts: i64) {
        if st.last().is_none_or(|&l| l <= ts) {
            st.push(ts);
        } else {
            let i = bisect_right(st, ts);
            st.insert(i, ts);
        }
    }

    /// `EventLeaf.step` on stored times (emptied: the caller drops the state): (answer,
    /// next instant it can flip or INF).
    pub fn step(&self, st: &mut Vec<i64>, t: i64) -> (bool, i64) {
        let (a, b) = (self.a, self.b);
        let i = bisect_right(st, t.saturating_sub(b));
        st.drain(..i);
        let mut j = bisect_right(st, t - a);
        let cap = self.count.cap;
        if j > cap {
            st.drain(..j - cap);
            j = cap;
        }
        if st.is_empty() {
            return (self.empty_truth, INF);
        }
        let truth = self.count.truth(j as i64);
        if matches!(self.count.op, CountOp::Ge) && a == 0 && *st.last().unwrap() <= t {
            let (n, v) = (st.len(), self.count.value);
            let due = if v > 0 && n as i64 >= v {
                st[n - v as usize] + b
            } else {
                INF
            };
            return (truth, due);
        }
        (truth, self.next_edge(st, t))
    }

    fn next_edge(&self, st: &[i64], t: i64) -> i64 {
        let (a, b) = (self.a, self.b);
        if a == 0 && *st.last().unwrap() <= t {
            let n = st.len() as i64;
            let cur = self.count.test(n);
            for k in 1..=st.len() {
                if self.count.test(n - k as i64) != cur {
                    return st[k - 1] + b;
                }
            }
            return INF;
        }
        let j = bisect_right(st, t - a);
        // next_flip over enters st[j..] + a and leaves st[..] + b
        let mut n = j as i64;
        let cur = self.count.test(n);
        let (ns, ne) = (st.len() - j, st.len());
        let (mut i, mut k) = (0usize, 0usize);
        let enter = |i: usize| if i < ns { st[j + i] + a } else { INF };
        let leave = |k: usize| if k < ne { st[k] + b } else { INF };
        let (mut s, mut e) = (enter(0), leave(0));
        for _ in 0..EDGE_WALK {
            let at = s.min(e);
            if at >= INF {
                return INF;
            }
            while s == at {
                n += 1;
                i += 1;
                s = enter(i);
            }
            while e == at {
                n -= 1;
                k += 1;
                e = leave(k);
            }
            if self.count.test(n) != cur {
                return at;
            }
        }
        s.min(e)
    }
}
