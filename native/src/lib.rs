//! engage-stream's native evaluation core.
//!
//! First slice: audiences whose conditions read only traits and memberships (no event
//! conditions, no duration operators), so they keep no state and set no wake-ups. The
//! Python engine (`engage_stream.engine`) stays the reference: every function here mirrors
//! one in `operators.py` / `conditions.py`, and `tests/engine/test_differential.py` runs
//! both on random definitions and event streams. `engage_stream.engine.native` decides
//! which definitions come here and turns the results into `Change`s.

mod compile;
mod ops;
mod value;

use std::collections::{BTreeSet, HashMap};

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;

struct Def {
    key: String,
    own: usize, // the membership read of its own key
    expr: compile::Node,
    include_anonymous: bool,
    dependents: Vec<usize>,
}

/// The audiences of one engine the core evaluates, in the engine's evaluation order.
#[pyclass(frozen, module = "engage_stream_core")]
struct Core {
    defs: Vec<Def>,
    tables: compile::Tables,
}

#[pymethods]
impl Core {
    /// `definitions`: each one's `model_dump_json()`, in evaluation order (dependencies
    /// first); `dependents[i]`: the positions (all after `i`) of the definitions that read
    /// definition `i`'s membership. Raises ValueError for a definition `supports` rejects.
    #[new]
    fn new(py: Python<'_>, definitions: Vec<String>, dependents: Vec<Vec<usize>>) -> PyResult<Self> {
        if dependents.len() != definitions.len() {
            return Err(PyValueError::new_err("one list of dependents per definition"));
        }
        let mut defs = Vec::with_capacity(definitions.len());
        for (i, (text, deps)) in definitions.iter().zip(dependents).enumerate() {
            let d: serde_json::Value =
                serde_json::from_str(text).map_err(|e| PyValueError::new_err(e.to_string()))?;
            let expr = compile::audience(&d).map_err(PyValueError::new_err)?;
            if let Some(&bad) = deps.iter().find(|&&j| j <= i || j >= definitions.len()) {
                return Err(PyValueError::new_err(format!(
                    "dependent {bad} of definition {i} is not after it"
                )));
            }
            defs.push(Def {
                key: d.get("key").and_then(|v| v.as_str()).unwrap_or("").to_string(),
                own: 0,
                expr,
                include_anonymous: d
                    .get("include_anonymous")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                dependents: deps,
            });
        }
        let index: HashMap<String, usize> =
            defs.iter().enumerate().map(|(i, d)| (d.key.clone(), i)).collect();
        let mut tables = compile::Tables::default();
        for d in &mut defs {
            d.own = tables.audience_slot(py, &d.key);
            d.expr.resolve(py, &index, &mut tables);
        }
        Ok(Core { defs, tables })
    }

    fn __len__(&self) -> usize {
        self.defs.len()
    }

    /// Evaluate `seeds` (positions) on `profile` (a ProfileRecord), then every dependent of
    /// a membership that changed, in order, each once. Returns the changes as
    /// `(position, new membership, origin)`: `origin` is the seed whose change led here
    /// (itself for a seed no earlier change reached) — a recompute's changes carry their
    /// origin's `definition:<version>` cause. The profile is not modified.
    fn evaluate(
        &self,
        profile: &Bound<'_, PyAny>,
        seeds: Vec<usize>,
        identified: bool,
    ) -> PyResult<Vec<(usize, bool, usize)>> {
        let n = self.defs.len();
        if let Some(bad) = seeds.iter().find(|&&s| s >= n) {
            return Err(PyIndexError::new_err(format!("no definition at position {bad}")));
        }
        let reader = value::Reader::new(profile)?;
        let mut call = compile::Call {
            reader: &reader,
            traits: &self.tables,
            overlay: vec![None; n],
            trait_reads: vec![None; self.tables.traits.len()],
            member_reads: vec![None; self.tables.audiences.len()],
        };
        let mut origin: Vec<Option<usize>> = vec![None; n];
        let mut todo: BTreeSet<usize> = seeds.into_iter().collect();
        let mut out = Vec::new();
        while let Some(r) = todo.pop_first() {
            let d = &self.defs[r];
            let member = (d.include_anonymous || identified) && d.expr.holds(&mut call)?;
            // (nothing changes a definition's own membership before it is evaluated)
            if member == call.member(d.own)? {
                continue;
            }
            let o = origin[r].unwrap_or(r);
            out.push((r, member, o));
            call.overlay[r] = Some(member);
            for &dep in &d.dependents {
                origin[dep].get_or_insert(o);
                todo.insert(dep);
            }
        }
        Ok(out)
    }
}

/// None when the core evaluates this definition (its `model_dump_json()`), else why not.
#[pyfunction]
fn supports(definition_json: &str) -> Option<String> {
    let d: serde_json::Value = match serde_json::from_str(definition_json) {
        Ok(d) => d,
        Err(e) => return Some(format!("unreadable definition: {e}")),
    };
    compile::audience(&d).err()
}

#[pymodule]
fn engage_stream_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_function(wrap_pyfunction!(supports, m)?)?;
    Ok(())
}
