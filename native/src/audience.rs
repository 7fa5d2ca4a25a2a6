//! An audience's state and evaluation, as `conditions.CompiledAudience` keeps and
//! evaluates it: one state slot per event row, each row's answer fed to the expression.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value as J;

use crate::compile::{Audience, AudienceSt, Call, Leaf, LeafSt};
use crate::events::{EventLeaf, INF};

fn times_of(v: &J) -> Result<Vec<i64>, String> {
    v.as_array()
        .ok_or("a row's state is not a list")?
        .iter()
        .map(|t| {
            t.as_i64()
                .ok_or_else(|| "a time is not an integer".to_string())
        })
        .collect()
}

/// A funnel side's `[[ts, []], ...]` (no property values: the core's funnels have none).
fn entries_of(v: &J) -> Result<Vec<i64>, String> {
    v.as_array()
        .ok_or("funnel entries are not a list")?
        .iter()
        .map(|e| {
            e.get(0)
                .and_then(J::as_i64)
                .ok_or_else(|| "a funnel entry without a time".to_string())
        })
        .collect()
}

fn entries_json(ts: &[i64]) -> J {
    J::Array(
        ts.iter()
            .map(|&t| J::Array(vec![J::Number(t.into()), J::Array(vec![])]))
            .collect(),
    )
}

impl Audience {
    /// The events its rows read (a funnel: its parent's and its child's).
    pub fn events(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![];
        for leaf in &self.leaves {
            let names = match leaf {
                Leaf::Times(l) => vec![l.event.as_str()],
                Leaf::Funnel(f) => vec![f.event.as_str(), f.child_event.as_str()],
            };
            for n in names {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    pub fn intern(&mut self, py: Python<'_>) {
        for leaf in &mut self.leaves {
            match leaf {
                Leaf::Times(l) => l.intern(py),
                Leaf::Funnel(f) => f.intern(py),
            }
        }
    }

    pub fn parse(&self, text: &str) -> Result<AudienceSt, String> {
        if self.leaves.iter().all(|l| matches!(l, Leaf::Times(_))) {
            // (plain rows only: their times read straight into vectors)
            let slots: Option<Vec<Option<Vec<i64>>>> =
                serde_json::from_str(text).map_err(|e| e.to_string())?;
            return match slots {
                Some(v) if v.len() != self.leaves.len() => {
                    Err(format!("not {} slots", self.leaves.len()))
                }
                v => Ok(v.map(|v| v.into_iter().map(|s| s.map(LeafSt::Times)).collect())),
            };
        }
        let v: J = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let slots = match v {
            J::Null => return Ok(None),
            J::Array(a) if a.len() == self.leaves.len() => a,
            _ => return Err(format!("not {} slots", self.leaves.len())),
        };
        let mut out = Vec::with_capacity(slots.len());
        for (slot, leaf) in slots.iter().zip(&self.leaves) {
            out.push(match (slot, leaf) {
                (J::Null, _) => None,
                (v, Leaf::Times(_)) => Some(LeafSt::Times(times_of(v)?)),
                (J::Array(pc), Leaf::Funnel(_)) if pc.len() == 2 => {
                    Some(LeafSt::Funnel(entries_of(&pc[0])?, entries_of(&pc[1])?))
                }
                _ => return Err("a funnel's state is not [parents, children]".into()),
            });
        }
        Ok(Some(out))
    }

    pub fn text(st: &[Option<LeafSt>]) -> String {
        let times: Option<Vec<Option<&Vec<i64>>>> = st
            .iter()
            .map(|s| match s {
                None => Some(None),
                Some(LeafSt::Times(ts)) => Some(Some(ts)),
                Some(LeafSt::Funnel(..)) => None,
            })
            .collect();
        if let Some(times) = times {
            return serde_json::to_string(&times).expect("integers serialise");
        }
        let slots = st
            .iter()
            .map(|s| match s {
                None => J::Null,
                Some(LeafSt::Times(ts)) => {
                    J::Array(ts.iter().map(|&t| J::Number(t.into())).collect())
                }
                Some(LeafSt::Funnel(p, c)) => J::Array(vec![entries_json(p), entries_json(c)]),
            })
            .collect();
        J::Array(slots).to_string()
    }

    /// `CompiledAudience.ingest`: whether a row stored the event.
    pub fn ingest(
        &self,
        st: &mut AudienceSt,
        name: &str,
        props: &Bound<'_, PyDict>,
        ts: i64,
        now: i64,
    ) -> PyResult<bool> {
        let mut changed = false;
        for (i, leaf) in self.leaves.iter().enumerate() {
            let (parent, child) = match leaf {
                Leaf::Times(l) => (l.event == name && l.keeps(props, ts, now)?, false),
                Leaf::Funnel(f) => f.keeps(name, props, ts, now)?,
            };
            if !(parent || child) {
                continue;
            }
            let slots = st.get_or_insert_with(|| (0..self.leaves.len()).map(|_| None).collect());
            let slot = slots[i].get_or_insert_with(|| match leaf {
                Leaf::Times(_) => LeafSt::Times(vec![]),
                Leaf::Funnel(_) => LeafSt::Funnel(vec![], vec![]),
            });
            match slot {
                LeafSt::Times(v) => EventLeaf::insert(v, ts),
                LeafSt::Funnel(p, c) => {
                    if parent {
                        EventLeaf::insert(p, ts);
                    }
                    if child {
                        EventLeaf::insert(c, ts);
                    }
                }
            }
            changed = true;
        }
        Ok(changed)
    }

    /// `CompiledAudience.evaluate` at `t`: (member, next instant it can change or INF);
    /// the state pruned, None once no row keeps anything.
    pub fn evaluate(
        &self,
        st: &mut AudienceSt,
        call: &mut Call<'_, '_>,
        t: i64,
        allowed: bool,
    ) -> PyResult<(bool, i64)> {
        let mut truths = Vec::with_capacity(self.leaves.len());
        let mut due = INF;
        let mut live = false;
        for (i, leaf) in self.leaves.iter().enumerate() {
            let slot = st.as_mut().and_then(|s| s[i].as_mut());
            let Some(ls) = slot else {
                truths.push(match leaf {
                    Leaf::Times(l) => l.empty_truth,
                    Leaf::Funnel(f) => f.empty_truth,
                });
                continue;
            };
            let (truth, edge, empty) = match (leaf, ls) {
                (Leaf::Times(l), LeafSt::Times(v)) => {
                    let (truth, edge) = l.step(v, t);
                    (truth, edge, v.is_empty())
                }
                (Leaf::Funnel(f), LeafSt::Funnel(p, c)) => {
                    let (truth, edge) = f.step(p, c, t);
                    (truth, edge, p.is_empty() && c.is_empty())
                }
                _ => return Err(PyValueError::new_err("a row's state of another kind")),
            };
            truths.push(truth);
            if empty {
                st.as_mut().unwrap()[i] = None;
            } else {
                live = true;
                due = due.min(edge);
            }
        }
        if !live {
            *st = None;
        }
        if !allowed {
            return Ok((false, INF)); // nothing can change until the profile is identified
        }
        call.truths = truths;
        Ok((self.expr.holds(call)?, due))
    }
}
