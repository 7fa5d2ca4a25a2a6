//! engage-stream's native evaluation core.
//!
//! It evaluates audiences of two shapes — conditions that read only traits and
//! memberships (no state, no wake-ups), and one event row counted in a window (state:
//! the event times) — and computed traits over an explicit window (traits.rs), each with
//! the Python engine's own state layout and wake-ups in `$d`. The Python
//! engine (`engage_stream.engine`) stays the reference: every function here mirrors one
//! in `operators.py` / `conditions.py` / `engine.py`, and
//! `tests/engine/test_differential.py` runs both on random definitions and inputs.
//! `engage_stream.engine.native` decides which definitions come here, owns everything
//! else in `ProfileRecord.engine`, and turns the results into `Change`s.

mod audience;
mod compact;
mod compile;
mod events;
mod ops;
mod partition;
mod traits;
mod value;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::OnceLock;

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use compile::{Audience, AudienceSt, Kind};
use events::INF;
use traits::{Out, TState};

struct Def {
    key: Py<PyString>,
    kind_name: &'static str, // "audience" | "computed_trait" (Change.kind)
    own: usize,              // the membership read of its own key
    kind: Kind,
    include_anonymous: bool,
    dependents: Vec<usize>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A change: (position, new value — a membership or a trait's value —, at, timer instant
/// or -1, origin position).
type Found = (usize, PyObject, i64, i64, usize);

/// The audiences of one engine the core evaluates, in the engine's evaluation order.
#[pyclass(frozen, module = "engage_stream_core")]
struct Core {
    defs: Vec<Def>,
    tables: compile::Tables,
    listeners: HashMap<String, Vec<usize>>, // event name -> positions (ascending)
    timed: Vec<usize>,                      // positions with wake-ups
    max_timer_steps: usize,
    outputs: OnceLock<Outputs>,
}

/// Per-position values of one call, and the order they were first set in.
struct Slots<T> {
    slots: Vec<Option<T>>,
    order: Vec<usize>,
}

impl<T> Slots<T> {
    fn new(n: usize) -> Self {
        Slots {
            slots: (0..n).map(|_| None).collect(),
            order: vec![],
        }
    }
    fn contains(&self, p: usize) -> bool {
        self.slots[p].is_some()
    }
    fn get(&self, p: usize) -> Option<&T> {
        self.slots[p].as_ref()
    }
    fn get_mut(&mut self, p: usize) -> Option<&mut T> {
        self.slots[p].as_mut()
    }
    fn insert(&mut self, p: usize, v: T) {
        if self.slots[p].replace(v).is_none() {
            self.order.push(p);
        }
    }
    fn drain(mut self) -> impl Iterator<Item = (usize, T)> {
        let order = std::mem::take(&mut self.order);
        order
            .into_iter()
            .filter_map(move |p| self.slots[p].take().map(|v| (p, v)))
    }
}

/// What `Core.changes` builds the engine's `Change`s with (`Core.set_outputs`).
struct Outputs {
    versions: Vec<i64>,
    prefixes: Vec<Vec<u8>>, // changes.message_id's input up to the profile id
    change: PyObject,       // changes.Change
    trait_value: PyObject,  // profiles.record.TraitValue
    new: PyObject,          // object.__new__
    change_fields: Vec<Py<PyString>>,
    value_fields: Vec<Py<PyString>>,
    kinds: Vec<Py<PyString>>, // each definition's `Change.kind`, one object for all its changes
    empty: Py<PyString>,      // a TraitValue's message id
}

/// `cls(**fields)` without its `__init__`, as `changes.make_change` and
/// `record._adopt` build them: `object.__new__`, then each field set as `object.__setattr__`
/// does (a frozen dataclass's own `__setattr__` refuses).
fn instance(
    py: Python<'_>,
    new: &PyObject,
    cls: &PyObject,
    names: &[Py<PyString>],
    values: &[PyObject],
) -> PyResult<PyObject> {
    let obj = new.call1(py, (cls,))?;
    for (name, v) in names.iter().zip(values) {
        // SAFETY: three valid, owned object pointers, held for the call; the GIL is held
        if unsafe { pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), v.as_ptr()) }
            < 0
        {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(obj)
}

/// `repr(value)` written into `out` for the values whose repr needs no Python (None, bools,
/// integers — the changes' usual values); false for any other (the caller asks Python).
fn python_repr(value: &Bound<'_, PyAny>, out: &mut String) -> bool {
    use std::fmt::Write;
    out.clear();
    if value.is_none() {
        out.push_str("None");
    } else if let Ok(b) = value.downcast_exact::<PyBool>() {
        out.push_str(if b.is_true() { "True" } else { "False" });
    } else if value.is_exact_instance_of::<pyo3::types::PyLong>() {
        match value.extract::<i64>() {
            Ok(i) => write!(out, "{i}").expect("writing to a String"),
            Err(_) => return false, // (beyond 64 bits: Python's repr)
        }
    } else {
        return false;
    }
    true
}

/// One call's working set: reads, memberships decided, states (loaded once, written
/// back at the end), the wake-up table and the changes so far.
struct Run<'a, 'py> {
    call: compile::Call<'a, 'py>,
    est: Bound<'py, PyDict>,
    dues: Bound<'py, PyDict>,
    states: Slots<AudienceSt>,
    traits: Slots<TState>,
    values: Slots<Out>,                  // trait values decided in this call
    due_reads: Vec<Option<Option<i64>>>, // `$d` entries read or written in this call
    out: Vec<Found>,
}

impl Core {
    fn run<'a, 'py>(
        &'a self,
        profile: &Bound<'py, PyAny>,
        reader: &'a value::Reader<'py>,
    ) -> PyResult<Run<'a, 'py>> {
        let py = profile.py();
        let est = profile
            .getattr(pyo3::intern!(py, "engine"))?
            .downcast_into::<PyDict>()?;
        let dues = match est.get_item(pyo3::intern!(py, "$d"))? {
            Some(d) => d.downcast_into::<PyDict>()?,
            None => {
                // (the caller drops it again if it stays empty, as Engine._finish does)
                let d = PyDict::new_bound(py);
                est.set_item(pyo3::intern!(py, "$d"), &d)?;
                d
            }
        };
        Ok(Run {
            call: compile::Call {
                reader,
                traits: &self.tables,
                overlay: vec![None; self.defs.len()],
                trait_overlay: vec![None; self.defs.len()],
                trait_reads: vec![None; self.tables.traits.len()],
                member_reads: vec![None; self.tables.audiences.len()],
                truths: vec![],
            },
            est,
            dues,
            states: Slots::new(self.defs.len()),
            traits: Slots::new(self.defs.len()),
            values: Slots::new(self.defs.len()),
            due_reads: vec![None; self.defs.len()],
            out: Vec::new(),
        })
    }

    /// Definition `p`'s stored state, read by `parse`; `empty` when none is stored.
    fn load<T>(
        &self,
        run: &Run<'_, '_>,
        p: usize,
        empty: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> PyResult<T> {
        match run.est.get_item(self.defs[p].key.bind(run.est.py()))? {
            Some(s) if !s.is_none() => parse(&s.downcast::<PyString>()?.to_cow()?)
                .map_err(|e| PyValueError::new_err(format!("state of position {p}: {e}"))),
            _ => Ok(empty),
        }
    }

    /// An audience's state (an audience without event rows keeps none).
    fn state<'r>(&self, run: &'r mut Run<'_, '_>, p: usize) -> PyResult<&'r mut AudienceSt> {
        if !run.states.contains(p) {
            let Kind::Audience(aud) = &self.defs[p].kind else {
                unreachable!("an audience")
            };
            let st = if aud.leaves.is_empty() {
                None
            } else {
                self.load(run, p, None, |t| aud.parse(t))?
            };
            run.states.insert(p, st);
        }
        Ok(run.states.get_mut(p).unwrap())
    }

    fn trait_state<'r>(&self, run: &'r mut Run<'_, '_>, p: usize) -> PyResult<&'r mut TState> {
        if !run.traits.contains(p) {
            let Kind::Trait(td) = &self.defs[p].kind else {
                unreachable!("a trait")
            };
            let st = self.load(run, p, TState::None, |t| {
                TState::parse(t, td.marks(), td.grained())
            })?;
            run.traits.insert(p, st);
        }
        Ok(run.traits.get_mut(p).unwrap())
    }

    fn due_of(&self, run: &mut Run<'_, '_>, p: usize) -> PyResult<Option<i64>> {
        if let Some(d) = run.due_reads[p] {
            return Ok(d);
        }
        let d = match run.dues.get_item(self.defs[p].key.bind(run.dues.py()))? {
            Some(d) => Some(d.extract::<i64>()?),
            None => None,
        };
        run.due_reads[p] = Some(d);
        Ok(d)
    }

    fn set_due(&self, run: &mut Run<'_, '_>, p: usize, due: i64) -> PyResult<()> {
        let due = (due < INF).then_some(due);
        if run.due_reads[p] == Some(due) {
            return Ok(());
        }
        let key = self.defs[p].key.bind(run.dues.py());
        match due {
            Some(d) => run.dues.set_item(key, d)?,
            None if run.dues.contains(key)? => run.dues.del_item(key)?,
            None => {}
        }
        run.due_reads[p] = Some(due);
        Ok(())
    }

    /// `Engine._evaluate`: `todo` at `t`, in order, then the dependents of what changed;
    /// returns the positions evaluated.
    fn evaluate_set(
        &self,
        run: &mut Run<'_, '_>,
        mut todo: BTreeSet<usize>,
        t: i64,
        at: i64,
        tau: i64,
        identified: bool,
    ) -> PyResult<Vec<usize>> {
        let mut origin: HashMap<usize, usize> = HashMap::new();
        let mut done = Vec::with_capacity(todo.len());
        while let Some(r) = todo.pop_first() {
            done.push(r);
            let d = &self.defs[r];
            let allowed = d.include_anonymous || identified;
            let py = run.est.py();
            let value: PyObject = match &d.kind {
                Kind::Trait(td) => {
                    let (value, due) = td.evaluate(py, self.trait_state(run, r)?, t)?;
                    let (value, due) = if allowed {
                        (value, due)
                    } else {
                        (Out::None, INF)
                    };
                    self.set_due(run, r, due)?;
                    let same = match run.values.get(r) {
                        Some(prev) => traits::same(py, prev, &value)?, // (an earlier boundary)
                        None => value
                            .same_as(run.call.reader.computed_value(d.key.bind(py))?.as_ref())?,
                    };
                    if same {
                        continue;
                    }
                    run.call.trait_overlay[r] = Some(value.val());
                    let obj = value.to_py(py);
                    run.values.insert(r, value);
                    obj
                }
                Kind::Audience(aud) => {
                    let mut st = self.state(run, r)?.take();
                    let (member, due) = aud.evaluate(&mut st, &mut run.call, t, allowed)?;
                    run.states.insert(r, st);
                    self.set_due(run, r, due)?;
                    let previous = match run.call.overlay[r] {
                        Some(m) => m, // changed earlier in this call (a previous boundary)
                        None => run.call.member(d.own)?,
                    };
                    if member == previous {
                        continue;
                    }
                    run.call.overlay[r] = Some(member);
                    PyBool::new_bound(py, member).to_owned().into_any().unbind()
                }
            };
            let o = *origin.get(&r).unwrap_or(&r);
            run.out.push((r, value, at, tau, o));
            for &dep in &d.dependents {
                origin.entry(dep).or_insert(o);
                todo.insert(dep);
            }
        }
        Ok(done)
    }

    /// `Engine._run_timers` over this core's wake-ups.
    fn run_timers(&self, run: &mut Run<'_, '_>, now: i64, identified: bool) -> PyResult<()> {
        let mut heap = BinaryHeap::new();
        for &p in &self.timed {
            if let Some(d) = self.due_of(run, p)? {
                if d <= now {
                    heap.push(Reverse((d, p)));
                }
            }
        }
        let mut steps = 0usize;
        while let Some(&Reverse((tau, p))) = heap.peek() {
            if self.due_of(run, p)? != Some(tau) {
                heap.pop(); // moved since it was pushed
                continue;
            }
            steps += 1;
            let catch_up = steps > self.max_timer_steps;
            let mut due = BTreeSet::new();
            let tau = if catch_up {
                for &q in &self.timed {
                    if self.due_of(run, q)?.is_some_and(|d| d <= now) {
                        due.insert(q);
                    }
                }
                heap.clear();
                now
            } else {
                while let Some(&Reverse((d, q))) = heap.peek() {
                    if d != tau {
                        break;
                    }
                    heap.pop();
                    if self.due_of(run, q)? == Some(d) {
                        due.insert(q);
                    }
                }
                tau
            };
            let done = self.evaluate_set(run, due, tau, tau, tau, identified)?;
            for r in done {
                if let Some(d) = self.due_of(run, r)? {
                    if d <= now {
                        heap.push(Reverse((d, r)));
                    }
                }
            }
            if catch_up {
                for &q in &self.timed {
                    if self.due_of(run, q)?.is_some_and(|d| d <= now) {
                        self.set_due(run, q, INF)?;
                    }
                }
                return Ok(());
            }
        }
        Ok(())
    }

    fn ingest(
        &self,
        run: &mut Run<'_, '_>,
        p: usize,
        name: &str,
        props: &Bound<'_, PyDict>,
        ts: i64,
        now: i64,
    ) -> PyResult<bool> {
        match &self.defs[p].kind {
            Kind::Trait(td) => td.ingest(self.trait_state(run, p)?, props, ts, now),
            Kind::Audience(aud) => aud.ingest(self.state(run, p)?, name, props, ts, now),
        }
    }

    /// Write the states back (`Engine._finish`'s part for this core's keys).
    fn finish(&self, run: Run<'_, '_>) -> PyResult<Vec<Found>> {
        let py = run.est.py();
        let audiences = run
            .states
            .drain()
            .map(|(p, st)| (p, st.map(|v| Audience::text(&v))));
        let traits = run.traits.drain().map(|(p, st)| {
            let Kind::Trait(td) = &self.defs[p].kind else {
                unreachable!("a trait")
            };
            (p, st.text(td.marks()))
        });
        for (p, text) in audiences.chain(traits) {
            let key = self.defs[p].key.bind(py);
            match text {
                Some(text) => run.est.set_item(key, text)?,
                None if run.est.contains(key)? => run.est.del_item(key)?,
                None => {}
            }
        }
        Ok(run.out)
    }

    fn check(&self, positions: &[usize]) -> PyResult<()> {
        match positions.iter().find(|&&s| s >= self.defs.len()) {
            Some(bad) => Err(PyIndexError::new_err(format!(
                "no definition at position {bad}"
            ))),
            None => Ok(()),
        }
    }
}

#[pymethods]
impl Core {
    /// `definitions`: each one's `model_dump_json()`, in evaluation order (dependencies
    /// first); `dependents[i]`: the positions (all after `i`) of the definitions that read
    /// definition `i`'s value; `windows[i]`: (a, b, funnel span) of the `windows.Window` of
    /// each of an audience's event rows, in row order, or a computed trait's one window
    /// (None for audiences without event rows). Raises ValueError for a definition
    /// `supports` rejects.
    #[new]
    #[pyo3(signature = (definitions, dependents, windows = None, max_timer_steps = 10_000))]
    fn new(
        py: Python<'_>,
        definitions: Vec<String>,
        dependents: Vec<Vec<usize>>,
        windows: Option<Vec<Option<Vec<(i64, i64, i64)>>>>,
        max_timer_steps: usize,
    ) -> PyResult<Self> {
        let n = definitions.len();
        let windows = windows.unwrap_or_else(|| vec![None; n]);
        if dependents.len() != n || windows.len() != n {
            return Err(PyValueError::new_err(
                "one list of dependents and one window per definition",
            ));
        }
        let mut defs = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        for (i, ((text, deps), window)) in
            definitions.iter().zip(dependents).zip(windows).enumerate()
        {
            let d: serde_json::Value =
                serde_json::from_str(text).map_err(|e| PyValueError::new_err(e.to_string()))?;
            let mut kind =
                compile::definition(&d, window.as_deref()).map_err(PyValueError::new_err)?;
            let windowed = match &mut kind {
                Kind::Audience(aud) => {
                    aud.intern(py);
                    !aud.leaves.is_empty()
                }
                Kind::Trait(td) => {
                    td.intern(py);
                    true
                }
            };
            if windowed && window.is_none() {
                return Err(PyValueError::new_err(format!(
                    "definition {i} without its windows"
                )));
            }
            if let Some(&bad) = deps.iter().find(|&&j| j <= i || j >= n) {
                return Err(PyValueError::new_err(format!(
                    "dependent {bad} of definition {i} is not after it"
                )));
            }
            let key = d
                .get("key")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            defs.push(Def {
                kind_name: if matches!(kind, Kind::Trait(_)) {
                    "computed_trait"
                } else {
                    "audience"
                },
                key: PyString::intern_bound(py, &key).unbind(),
                own: 0,
                kind,
                include_anonymous: d
                    .get("include_anonymous")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                dependents: deps,
            });
            keys.push(key);
        }
        let index: HashMap<String, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut tables = compile::Tables::default();
        let mut listeners: HashMap<String, Vec<usize>> = HashMap::new();
        let mut timed = vec![];
        for (p, (d, key)) in defs.iter_mut().zip(&keys).enumerate() {
            d.own = tables.audience_slot(py, key);
            match &mut d.kind {
                Kind::Audience(aud) => {
                    aud.expr.resolve(py, &index, &mut tables);
                    if !aud.leaves.is_empty() {
                        for e in aud.events() {
                            listeners.entry(e.to_string()).or_default().push(p);
                        }
                        timed.push(p);
                    }
                }
                Kind::Trait(td) => {
                    listeners.entry(td.event.clone()).or_default().push(p);
                    timed.push(p);
                }
            }
        }
        Ok(Core {
            defs,
            tables,
            listeners,
            timed,
            max_timer_steps,
            outputs: OnceLock::new(),
        })
    }

    /// What `changes` needs: each definition's version, the `Change` and the
    /// `TraitValue` classes (once; a second call is an error).
    fn set_outputs(
        &self,
        py: Python<'_>,
        versions: Vec<i64>,
        change: PyObject,
        trait_value: PyObject,
    ) -> PyResult<()> {
        if versions.len() != self.defs.len() {
            return Err(PyValueError::new_err("one version per definition"));
        }
        let prefixes = self
            .defs
            .iter()
            .zip(&versions)
            .map(|(d, v)| format!("{}\x00{}\x00{v}\x00", d.kind_name, d.key).into_bytes())
            .collect();
        let names = |fs: &[&str]| {
            fs.iter()
                .map(|f| PyString::intern_bound(py, f).unbind())
                .collect()
        };
        let new = py
            .import_bound("builtins")?
            .getattr("object")?
            .getattr("__new__")?
            .unbind();
        let change_fields = names(&[
            "kind",
            "key",
            "version",
            "profile_id",
            "value",
            "previous",
            "at",
            "cause",
            "_message_id",
        ]);
        let value_fields = names(&["value", "ts", "message_id"]);
        let kinds = self
            .defs
            .iter()
            .map(|d| PyString::intern_bound(py, d.kind_name).unbind())
            .collect();
        let empty = PyString::intern_bound(py, "").unbind();
        self.outputs
            .set(Outputs {
                versions,
                prefixes,
                change,
                trait_value,
                new,
                change_fields,
                value_fields,
                kinds,
                empty,
            })
            .map_err(|_| PyValueError::new_err("outputs already set"))
    }

    /// `found` (what `on_event` / `on_time` / `recompute` returned) as the Python engine's
    /// `Change`s, each value written to the profile as it goes (`TraitValue(value, at)`; a
    /// trait's None removes it): (the boundaries' changes, the others', whether a
    /// membership / a computed trait was stored for the first time). `cause`: of the
    /// changes that are not a boundary's; None: each one's `definition:<version>`.
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (profile, found, cause))]
    fn changes(
        &self,
        profile: &Bound<'_, PyAny>,
        found: Vec<Found>,
        cause: Option<&str>,
    ) -> PyResult<(Vec<PyObject>, Vec<PyObject>, bool, bool)> {
        let py = profile.py();
        let o = self
            .outputs
            .get()
            .ok_or_else(|| PyValueError::new_err("set_outputs first"))?;
        let pid_obj = profile.getattr(pyo3::intern!(py, "profile_id"))?;
        let pid = pid_obj.downcast::<PyString>()?.to_str()?.to_string();
        let audiences = profile
            .getattr(pyo3::intern!(py, "audiences"))?
            .downcast_into::<PyDict>()?;
        let traits = profile
            .getattr(pyo3::intern!(py, "computed_traits"))?
            .downcast_into::<PyDict>()?;
        let value_attr = pyo3::intern!(py, "value");
        let ts_attr = pyo3::intern!(py, "ts");
        let (mut timers, mut mine) = (vec![], vec![]);
        let (mut new_audience, mut new_trait) = (false, false);
        // the changes of one cause share its text: one string object for them all
        let mut last_cause: Option<(String, PyObject)> = None;
        let mut repr_buf = String::new();
        for (p, value, at, tau, origin) in found {
            let d = &self.defs[p];
            let c = if tau >= 0 {
                format!("timer:{tau}")
            } else {
                match cause {
                    Some(c) => c.to_string(),
                    None => format!("definition:{}", o.versions[origin]),
                }
            };
            let audience = d.kind_name == "audience";
            let store = if audience { &audiences } else { &traits };
            let key = d.key.bind(py);
            let value = value.into_bound(py);
            let tv = store.get_item(key)?.filter(|tv| !tv.is_none());
            let previous: PyObject = match (&tv, audience) {
                (_, true) => PyBool::new_bound(py, !value.is_truthy()?)
                    .to_owned()
                    .into_any()
                    .unbind(),
                (Some(tv), false) => tv.getattr(value_attr)?.unbind(),
                (None, false) => py.None(),
            };
            if tv.is_none() {
                if audience {
                    new_audience = true;
                } else {
                    new_trait = true;
                }
            }
            let when = match &tv {
                Some(tv) => at.max(tv.getattr(ts_attr)?.extract::<i64>()?),
                None => at,
            };
            let mut h = Blake2bVar::new(16).expect("16 is a valid BLAKE2b length");
            h.update(&o.prefixes[p]);
            h.update(pid.as_bytes());
            h.update(b"\x00");
            h.update(c.as_bytes());
            h.update(b"\x00");
            if python_repr(&value, &mut repr_buf) {
                h.update(repr_buf.as_bytes());
            } else {
                h.update(value.repr()?.to_str()?.as_bytes());
            }
            let mut digest = [0u8; 16];
            h.finalize_variable(&mut digest).expect("16 bytes");
            let mut mid = String::with_capacity(39);
            mid.push_str("engage-");
            for b in digest {
                mid.push(HEX[(b >> 4) as usize] as char);
                mid.push(HEX[(b & 15) as usize] as char);
            }
            let when_obj = when.into_py(py);
            let cause_obj = match &last_cause {
                Some((text, obj)) if *text == c => obj.clone_ref(py),
                _ => {
                    let obj = PyString::new_bound(py, &c).into_any().unbind();
                    last_cause = Some((c, obj.clone_ref(py)));
                    obj
                }
            };
            let fields = [
                o.kinds[p].clone_ref(py).into_any(),
                key.clone().into_any().unbind(),
                o.versions[p].into_py(py),
                pid_obj.clone().unbind(),
                value.clone().unbind(),
                previous,
                when_obj.clone_ref(py),
                cause_obj,
                mid.into_py(py),
            ];
            let change = instance(py, &o.new, &o.change, &o.change_fields, &fields)?;
            if value.is_none() {
                if store.contains(key)? {
                    store.del_item(key)?;
                }
            } else {
                let tv = [value.unbind(), when_obj, o.empty.clone_ref(py).into_any()];
                store.set_item(
                    key,
                    instance(py, &o.new, &o.trait_value, &o.value_fields, &tv)?,
                )?;
            }
            if tau >= 0 {
                timers.push(change)
            } else {
                mine.push(change)
            }
        }
        Ok((timers, mine, new_audience, new_trait))
    }

    fn __len__(&self) -> usize {
        self.defs.len()
    }

    /// `Engine.on_event` for this core's definitions, on `profile` (a ProfileRecord whose
    /// `engine` has a `$d` table): the due boundaries first when `timers`, then the event
    /// `name` (None: nothing to ingest) and the forced `seeds`, evaluated at `now`.
    /// Returns the changes in order as (position, new membership, at, boundary instant or
    /// -1, origin); states and wake-ups are updated, memberships left to the caller.
    #[pyo3(signature = (profile, now, identified, seeds, timers, name, props, ts, at))]
    #[allow(clippy::too_many_arguments)]
    fn on_event(
        &self,
        profile: &Bound<'_, PyAny>,
        now: i64,
        identified: bool,
        seeds: Vec<usize>,
        timers: bool,
        name: Option<&str>,
        props: Option<&Bound<'_, PyDict>>,
        ts: i64,
        at: i64,
    ) -> PyResult<Vec<Found>> {
        self.check(&seeds)?;
        let reader = value::Reader::new(profile)?;
        let mut run = self.run(profile, &reader)?;
        if timers {
            self.run_timers(&mut run, now, identified)?;
        }
        let mut todo: BTreeSet<usize> = seeds.into_iter().collect();
        if let (Some(name), Some(props)) = (name, props) {
            if let Some(ps) = self.listeners.get(name) {
                for &p in ps {
                    if self.ingest(&mut run, p, name, props, ts, now)? {
                        todo.insert(p);
                    }
                }
            }
        }
        if !todo.is_empty() {
            self.evaluate_set(&mut run, todo, now, at, -1, identified)?;
        }
        self.finish(run)
    }

    /// `Engine.on_time`: the due boundaries up to `now`.
    fn on_time(
        &self,
        profile: &Bound<'_, PyAny>,
        now: i64,
        identified: bool,
    ) -> PyResult<Vec<Found>> {
        let reader = value::Reader::new(profile)?;
        let mut run = self.run(profile, &reader)?;
        self.run_timers(&mut run, now, identified)?;
        self.finish(run)
    }

    /// `Engine.recompute`'s part: the due boundaries when `timers`, then the states of
    /// `rebuild` from `history` ((event name, properties, time), in time order; their
    /// stored states already removed), then `seeds` evaluated at `now`.
    #[allow(clippy::too_many_arguments)]
    fn recompute(
        &self,
        profile: &Bound<'_, PyAny>,
        now: i64,
        identified: bool,
        seeds: Vec<usize>,
        timers: bool,
        rebuild: Vec<usize>,
        history: Vec<(String, Bound<'_, PyDict>, i64)>,
    ) -> PyResult<Vec<Found>> {
        self.check(&seeds)?;
        self.check(&rebuild)?;
        let reader = value::Reader::new(profile)?;
        let mut run = self.run(profile, &reader)?;
        if timers {
            self.run_timers(&mut run, now, identified)?;
        }
        for &p in &rebuild {
            let events = match &self.defs[p].kind {
                Kind::Audience(aud) => {
                    run.states.insert(p, None);
                    aud.events()
                }
                Kind::Trait(td) => {
                    run.traits.insert(p, TState::None);
                    vec![td.event.as_str()]
                }
            };
            for (name, props, ts) in &history {
                if events.contains(&name.as_str()) {
                    self.ingest(&mut run, p, name, props, *ts, now)?;
                }
            }
        }
        if !seeds.is_empty() {
            self.evaluate_set(
                &mut run,
                seeds.into_iter().collect(),
                now,
                now,
                -1,
                identified,
            )?;
        }
        self.finish(run)
    }

    /// `seeds` evaluated at instant 0 with no event (tests: the operators and
    /// memberships): changes as (position, new membership, origin).
    fn evaluate(
        &self,
        profile: &Bound<'_, PyAny>,
        seeds: Vec<usize>,
        identified: bool,
    ) -> PyResult<Vec<(usize, bool, usize)>> {
        let out = self.on_event(profile, 0, identified, seeds, false, None, None, 0, 0)?;
        let py = profile.py();
        out.into_iter()
            .map(|(p, m, _, _, o)| Ok((p, m.bind(py).is_truthy()?, o)))
            .collect()
    }
}

/// None when the core evaluates this definition (its `model_dump_json()`), else why not.
#[pyfunction]
fn supports(definition_json: &str) -> Option<String> {
    let d: serde_json::Value = match serde_json::from_str(definition_json) {
        Ok(d) => d,
        Err(e) => return Some(format!("unreadable definition: {e}")),
    };
    compile::definition(&d, None).err()
}

#[pymodule]
fn engage_stream_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_function(wrap_pyfunction!(supports, m)?)?;
    m.add_function(wrap_pyfunction!(partition::murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(partition::partition_for, m)?)?;
    Ok(())
}
