//! One computed trait over an explicit window, as `aggregates.CompiledTrait` evaluates it
//! in its *exact* mode on a plain window (`within` / `between` that the lookback never
//! cuts short, filters on constants only): one entry per qualifying event, sorted by
//! time, column-wise — `[times, contributions | null, total, k(, first)]`, the very
//! layout the Python engine stores, so a profile's state moves between the engines
//! either way. The entries that already count are the prefix of `k`; the invertible
//! types keep a running total of it. Every function names the one it mirrors.

use std::cmp::Ordering;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyLong, PyString};
use serde_json::{Map, Number, Value as J};

use crate::compact;
use crate::events::{event_and_filters, Filters, INF};
use crate::ops::{as_number, Num};
use crate::value::Val;

/// `aggregates.MAX_FLOAT_TERM`: a float beyond it does not count in a sum or average.
const MAX_FLOAT_TERM: f64 = 1e300;
// orjson's integer range (`aggregates._INT_MIN` / `_INT_MAX`)
const INT_MIN: i128 = -(1i128 << 63);
const INT_MAX: i128 = (1i128 << 64) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    MostFrequent,
    UniqueList,
    UniqueCount,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "counter" => Type::Counter,
            "sum" => Type::Sum,
            "avg" => Type::Avg,
            "min" => Type::Min,
            "max" => Type::Max,
            "first" => Type::First,
            "last" => Type::Last,
            "most_frequent" => Type::MostFrequent,
            "unique_list" => Type::UniqueList,
            "unique_count" => Type::UniqueCount,
            _ => return None,
        })
    }
    fn summed(self) -> bool {
        matches!(self, Type::Sum | Type::Avg)
    }
    fn keyed(self) -> bool {
        matches!(
            self,
            Type::MostFrequent | Type::UniqueList | Type::UniqueCount
        )
    }
    fn ends(self) -> bool {
        matches!(self, Type::First | Type::Last)
    }
    /// Invertible (`CompiledTrait.inv` is set): a running total of the counting prefix.
    fn invertible(self) -> bool {
        matches!(self, Type::Counter | Type::Sum | Type::Avg) || self.keyed()
    }
    /// `marks`: keeps `first`, and is 0 (not None) once the profile has had a value.
    fn marks(self) -> bool {
        matches!(self, Type::Counter | Type::Sum | Type::UniqueCount)
    }
}

#[derive(Debug)]
pub struct TraitDef {
    pub event: String,
    filters: Filters,
    path: Option<Vec<String>>,
    path_keys: Vec<Py<PyString>>,
    ty: Type,
    min_frequency: i64,
    textual: bool,
    a: i64,
    b: i64,
    grain: i64, // > 0: a grained window (`windows.Window.grained`)
}

/// What a change carries: the trait's new value.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    None,
    Int(i128),
    Float(f64),
    Json(J),
}

/// `aggregates._Sum`'s partial: [int part, float partials, count, float count].
#[derive(Debug, Clone, Default)]
struct SumP {
    int: i128,
    floats: Vec<f64>,
    n: i64,
    nf: i64,
}

#[derive(Debug, Clone)]
enum Total {
    Null,
    Count(i64),
    Sum(SumP),
    Counts(Map<String, J>),
}

#[derive(Debug, Clone)]
pub struct Full {
    times: Vec<i64>,
    values: Option<Vec<J>>,
    total: Total,
    k: usize,
    first: Option<i64>,       // (marks only)
    counts: Option<Vec<u64>>, // (grained only) events per entry
}

/// A trait's stored state: none, only `first` (an empty window), or the window.
#[derive(Debug, Clone)]
pub enum TState {
    None,
    First(i64),
    Full(Full),
}

/// The computed trait compiled, or why the core does not evaluate it (`window`: the
/// (a, b, grain) of its `windows.Window`, as the Python engine computed it).
pub fn compile(d: &J, window: Option<(i64, i64, i64)>) -> Result<TraitDef, String> {
    let ty = d.get("type").and_then(J::as_str).ok_or("no type")?;
    let ty = Type::parse(ty).ok_or_else(|| format!("trait type {ty}"))?;
    if !matches!(d.get("session"), None | Some(J::Null)) {
        return Err("session windows are not ported yet".into());
    }
    let (event, filters) = event_and_filters(d.as_object().ok_or("not an object")?)?;
    let path = match d.get("property") {
        None | Some(J::Null) => None,
        Some(J::String(p)) if !p.is_empty() => Some(split_path(p)),
        Some(_) => return Err("property is not a string".into()),
    };
    let min_frequency = d.get("min_frequency").and_then(J::as_i64).unwrap_or(2);
    let textual = d.get("as_string").and_then(J::as_bool).unwrap_or(false);
    let (a, b, grain) = window.unwrap_or((0, 1, 0));
    if b <= a {
        return Err("a window that counts nothing".into());
    }
    if grain < 0 || (grain > 0 && a != 0) {
        return Err(format!("grain {grain} on a window from {a}"));
    }
    Ok(TraitDef {
        event: event.to_string(),
        filters,
        path,
        path_keys: vec![],
        ty,
        min_frequency,
        textual,
        a,
        b,
        grain,
    })
}

/// `operators.split_path`: `.` nests, `\.` is a literal dot.
fn split_path(path: &str) -> Vec<String> {
    let mut parts = vec![];
    let mut buf = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'.') {
            buf.push('.');
            chars.next();
        } else if c == '.' {
            parts.push(std::mem::take(&mut buf));
        } else {
            buf.push(c);
        }
    }
    parts.push(buf);
    parts
}

// -- values -----------------------------------------------------------------------------
/// A JSON value from a property (what orjson decoded: dict, list, str, int, float, bool,
/// None); integers beyond 64 bits and non-finite floats are refused (JSON has neither).
pub fn json_of(x: &Bound<'_, PyAny>) -> PyResult<J> {
    if x.is_none() {
        Ok(J::Null)
    } else if let Ok(b) = x.downcast_exact::<PyBool>() {
        Ok(J::Bool(b.is_true()))
    } else if x.is_exact_instance_of::<PyLong>() {
        if let Ok(i) = x.extract::<i64>() {
            Ok(J::Number(i.into()))
        } else {
            Ok(J::Number(x.extract::<u64>()?.into()))
        }
    } else if x.is_exact_instance_of::<PyFloat>() {
        let f: f64 = x.extract()?;
        Number::from_f64(f)
            .map(J::Number)
            .ok_or_else(|| PyValueError::new_err("a non-finite float"))
    } else if let Ok(s) = x.downcast_exact::<PyString>() {
        Ok(J::String(s.to_str()?.to_string()))
    } else if let Ok(l) = x.downcast_exact::<PyList>() {
        l.iter()
            .map(|e| json_of(&e))
            .collect::<PyResult<Vec<J>>>()
            .map(J::Array)
    } else if let Ok(d) = x.downcast_exact::<PyDict>() {
        let mut m = Map::new();
        for (k, v) in d.iter() {
            let k = k
                .downcast_exact::<PyString>()
                .map_err(|_| PyValueError::new_err("a non-string key"))?;
            m.insert(k.to_str()?.to_string(), json_of(&v)?);
        }
        Ok(J::Object(m))
    } else {
        Err(PyValueError::new_err(format!(
            "not a JSON value: {}",
            x.get_type().name()?
        )))
    }
}

pub fn json_to_py(py: Python<'_>, v: &J) -> PyObject {
    match v {
        J::Null => py.None(),
        J::Bool(b) => b.into_py(py),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_py(py)
            } else if let Some(u) = n.as_u64() {
                u.into_py(py)
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_py(py)
            }
        }
        J::String(s) => s.into_py(py),
        J::Array(a) => PyList::new_bound(py, a.iter().map(|e| json_to_py(py, e)))
            .into_any()
            .unbind(),
        J::Object(m) => {
            let d = PyDict::new_bound(py);
            for (k, v) in m {
                d.set_item(k, json_to_py(py, v)).expect("a str key");
            }
            d.into_any().unbind()
        }
    }
}

impl Out {
    pub fn to_py(&self, py: Python<'_>) -> PyObject {
        match self {
            Out::None => py.None(),
            Out::Int(i) => i.into_py(py),
            Out::Float(f) => f.into_py(py),
            Out::Json(j) => json_to_py(py, j),
        }
    }

    /// The value as the operators read it (`value.Val`).
    pub fn val(&self) -> Val {
        match self {
            Out::None => Val::Null,
            Out::Int(i) => Val::Int(*i),
            Out::Float(f) => Val::Float(*f),
            Out::Json(j) => Val::from_json(j),
        }
    }

    /// `Engine._evaluate`'s change test, negated: `type(previous) is type(value) and
    /// previous == value` against the stored Python value (None: no stored value).
    pub fn same_as(&self, prev: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let Some(p) = prev else {
            return Ok(matches!(self, Out::None));
        };
        Ok(match self {
            Out::None => p.is_none(),
            Out::Int(i) => {
                p.is_exact_instance_of::<PyLong>() && p.extract::<i128>().is_ok_and(|x| x == *i)
            }
            Out::Float(f) => p.is_exact_instance_of::<PyFloat>() && p.extract::<f64>()? == *f,
            Out::Json(J::String(s)) => p
                .downcast_exact::<PyString>()
                .is_ok_and(|x| x.to_str().is_ok_and(|x| x == s)),
            Out::Json(J::Bool(b)) => p
                .downcast_exact::<PyBool>()
                .is_ok_and(|x| x.is_true() == *b),
            Out::Json(J::Number(n)) => {
                if n.is_f64() {
                    p.is_exact_instance_of::<PyFloat>()
                        && p.extract::<f64>()? == n.as_f64().unwrap()
                } else {
                    p.is_exact_instance_of::<PyLong>()
                        && p.extract::<i128>().is_ok_and(|x| {
                            Some(x) == n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
                        })
                }
            }
            Out::Json(J::Null) => p.is_none(),
            Out::Json(j @ J::Array(_)) => {
                p.is_exact_instance_of::<PyList>() && p.eq(json_to_py(p.py(), j))?
            }
            Out::Json(j @ J::Object(_)) => {
                p.is_exact_instance_of::<PyDict>() && p.eq(json_to_py(p.py(), j))?
            }
        })
    }
}

/// Two values one trait took within a call: the same (`Out::same_as`'s test)?
pub fn same(py: Python<'_>, a: &Out, b: &Out) -> PyResult<bool> {
    match (a, b) {
        (Out::Json(x @ (J::Array(_) | J::Object(_))), Out::Json(J::Array(_) | J::Object(_))) => {
            b.same_as(Some(json_to_py(py, x).bind(py)))
        }
        _ => Ok(a == b),
    }
}

/// `aggregates.value_key`: strings as they are, anything else as its (orjson) JSON text.
fn value_key(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        other => serde_json::to_string(other).expect("JSON values serialise"),
    }
}

fn num_json(n: Num) -> J {
    match n {
        Num::I(i) => {
            if let Ok(x) = i64::try_from(i) {
                J::Number(x.into())
            } else {
                J::Number((i as u64).into()) // (as_number keeps integers within u64)
            }
        }
        Num::F(f) => J::Number(Number::from_f64(f).expect("as_number is finite")),
    }
}

fn json_num(v: &J) -> Num {
    match Val::from_json(v) {
        Val::Int(i) => Num::I(i),
        Val::Float(f) => Num::F(f),
        _ => Num::F(f64::NAN),
    }
}

/// Python's `x >= y` (`ge`) / `x <= y` between two contributions of one min / max.
fn ordered(x: &J, y: &J, textual: bool) -> Option<Ordering> {
    if textual {
        return match (x, y) {
            (J::String(a), J::String(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        };
    }
    crate::ops::num_cmp(json_num(x), json_num(y))
}

// -- sums: Shewchuk partials, as math.fsum --------------------------------------------------
/// The partials loop `aggregates._msum` and `math.fsum` share: `x` folded into the
/// non-overlapping partials (their non-zero low parts kept); returns the high part left.
fn fold(partials: &mut Vec<f64>, mut x: f64) -> f64 {
    let mut i = 0;
    for j in 0..partials.len() {
        let mut y = partials[j];
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let hi = x + y;
        let lo = y - (hi - x);
        if lo != 0.0 {
            partials[i] = lo;
            i += 1;
        }
        x = hi;
    }
    partials.truncate(i);
    x
}

/// `aggregates._msum`: add `x` to the partials, exactly (the high part kept even if 0).
fn msum(partials: &mut Vec<f64>, x: f64) {
    let hi = fold(partials, x);
    partials.push(hi);
}

/// CPython's `math.fsum` (Modules/mathmodule.c) over finite floats.
fn fsum(items: impl IntoIterator<Item = f64>) -> f64 {
    let mut p: Vec<f64> = Vec::new();
    for x in items {
        let hi = fold(&mut p, x);
        if hi != 0.0 {
            p.push(hi);
        }
    }
    let mut n = p.len();
    let mut hi = 0.0f64;
    if n > 0 {
        n -= 1;
        hi = p[n];
        let mut lo = 0.0f64;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
    }
    hi
}

/// Python's `a / b` for integers (`b > 0`): the correctly rounded quotient.
fn true_divide(a: i128, b: i64) -> f64 {
    const EXACT: u128 = 1 << 53;
    let (neg, m, d) = (a < 0, a.unsigned_abs(), b as u128);
    let q = if m <= EXACT && d <= EXACT {
        m as f64 / d as f64 // both exact as floats: one rounding
    } else {
        // scale so the integer quotient carries >= 55 significant bits, then round once
        // with the remainder as a sticky bit
        let mut shift = 0i32;
        let mut num = m;
        while num / d < (1u128 << 55) && num.leading_zeros() > 1 {
            num <<= 1;
            shift += 1;
        }
        let (qq, r) = (num / d, num % d);
        let sticky = (qq << 1) | u128::from(r != 0);
        (sticky as f64) * 2f64.powi(-(shift + 1))
    };
    if neg {
        -q
    } else {
        q
    }
}

impl SumP {
    /// `_Sum.merge` of one lifted contribution, with `sign` ±1.
    fn add(&mut self, c: &J, sign: i64) {
        match json_num(c) {
            Num::I(i) => self.int += sign as i128 * i,
            Num::F(f) => {
                msum(&mut self.floats, sign as f64 * f);
                self.nf += sign;
            }
        }
        self.n += sign;
        if self.nf == 0 {
            self.floats.clear();
        }
    }

    fn value(&self, average: bool) -> Out {
        if self.n == 0 {
            return if average { Out::None } else { Out::Int(0) };
        }
        let stored_as_text = !(INT_MIN..=INT_MAX).contains(&self.int);
        if self.nf == 0 && !stored_as_text {
            return if average {
                Out::Float(true_divide(self.int, self.n))
            } else {
                Out::Int(self.int)
            };
        }
        let total = fsum(self.floats.iter().copied().chain([self.int as f64]));
        Out::Float(if average {
            total / self.n as f64
        } else {
            total
        })
    }

    fn to_json(&self) -> J {
        let int = if (INT_MIN..=INT_MAX).contains(&self.int) {
            num_json(Num::I(self.int))
        } else {
            J::String(self.int.to_string())
        };
        let floats = self
            .floats
            .iter()
            .map(|&f| J::Number(Number::from_f64(f).expect("finite partials")))
            .collect();
        J::Array(vec![
            int,
            J::Array(floats),
            J::Number(self.n.into()),
            J::Number(self.nf.into()),
        ])
    }

    fn from_json(v: &J) -> Result<SumP, String> {
        let a = v
            .as_array()
            .filter(|a| a.len() == 4)
            .ok_or("a sum partial is not 4 slots")?;
        let int = match &a[0] {
            J::String(s) => s
                .parse::<i128>()
                .map_err(|e| format!("sum int part {s:?}: {e}"))?,
            n => match json_num(n) {
                Num::I(i) => i,
                Num::F(_) => return Err("sum int part is not an integer".into()),
            },
        };
        let floats = a[1]
            .as_array()
            .ok_or("sum partials are not a list")?
            .iter()
            .map(|f| f.as_f64().ok_or("a partial is not a number"))
            .collect::<Result<Vec<f64>, _>>()?;
        let n = a[2].as_i64().ok_or("sum count")?;
        let nf = a[3].as_i64().ok_or("sum float count")?;
        Ok(SumP { int, floats, n, nf })
    }
}

// -- the ordering rule of unique lists and most-frequent ties ------------------------------
/// `aggregates.order_key`: number-spelling keys first by value, then text by its
/// case-folded form, then by code point. (`casefold`: Python's own for non-ASCII text.)
struct OrderKey {
    num: Option<Num>,
    folded: String,
}

fn order_key(py: Python<'_>, k: &str) -> PyResult<OrderKey> {
    let num = as_number(&Val::Str(k.to_string()));
    let folded = if num.is_some() {
        String::new()
    } else if k.is_ascii() {
        k.to_ascii_lowercase()
    } else {
        PyString::new_bound(py, k)
            .call_method0(pyo3::intern!(py, "casefold"))?
            .extract()?
    };
    Ok(OrderKey { num, folded })
}

fn cmp_keys(x: (&OrderKey, &str), y: (&OrderKey, &str)) -> Ordering {
    let first = match (x.0.num, y.0.num) {
        (Some(a), Some(b)) => crate::ops::num_cmp(a, b).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => x.0.folded.cmp(&y.0.folded),
    };
    first.then_with(|| x.1.cmp(y.1))
}

fn in_order(py: Python<'_>, keys: Vec<&String>) -> PyResult<Vec<String>> {
    let mut ks = keys
        .into_iter()
        .map(|k| Ok((order_key(py, k)?, k)))
        .collect::<PyResult<Vec<_>>>()?;
    ks.sort_by(|x, y| cmp_keys((&x.0, x.1), (&y.0, y.1)));
    Ok(ks.into_iter().map(|(_, k)| k.clone()).collect())
}

// -- state --------------------------------------------------------------------------------
impl TState {
    /// The stored text, read straight into the window's columns (`marks`: the state has
    /// `first` as a fifth slot).
    /// `grained`: the trait's window is, so its entries carry counts (a state written
    /// for the other layout is brought to this one, as `CompiledTrait._current` does).
    pub fn parse(text: &str, marks: bool, grained: bool) -> Result<TState, String> {
        let t = text.trim_start();
        if t.starts_with('n') {
            return Ok(TState::None);
        }
        let full = if t.starts_with(compact::MARK) {
            let w = compact::read(t)?;
            let total = total_of(w.total)?;
            Full {
                times: w.times,
                values: w.values,
                total,
                k: w.k,
                first: w.first,
                counts: w.counts,
            }
        } else if !t.starts_with('[') {
            return serde_json::from_str::<i64>(t)
                .map(TState::First)
                .map_err(|e| e.to_string());
        } else {
            // (the JSON layout: the Python engine's, and this core's before the compact text):
            // [times, values, total, k(, counts)(, first)]
            let mut slots: Vec<J> = serde_json::from_str(t).map_err(|e| e.to_string())?;
            let first = if marks {
                slots.pop().ok_or("no first slot")?
            } else {
                J::Null
            };
            let counts = if slots.len() == 5 {
                Some(slots.pop().unwrap())
            } else {
                None
            };
            let [times, values, total, k]: [J; 4] = slots
                .try_into()
                .map_err(|v: Vec<J>| format!("a window of {} slots", v.len()))?;
            fn of<T: serde::de::DeserializeOwned>(v: J) -> Result<T, String> {
                serde_json::from_value(v).map_err(|e| e.to_string())
            }
            Full {
                times: of(times)?,
                values: of(values)?,
                total: total_of(total)?,
                k: of(k)?,
                first: of(first)?,
                counts: counts.map(of).transpose()?,
            }
        };
        if full.k > full.times.len()
            || full
                .counts
                .as_ref()
                .is_some_and(|c| c.len() != full.times.len())
        {
            return Err("a window whose columns disagree".into());
        }
        Ok(TState::Full(full.fit(grained)))
    }

    /// The stored text (None: nothing to store): a window in the compact text.
    pub fn text(&self, marks: bool) -> Option<String> {
        match self {
            TState::None => None,
            TState::First(f) => Some(f.to_string()),
            TState::Full(f) => {
                let total = match &f.total {
                    Total::Null => J::Null,
                    Total::Count(n) => J::Number((*n).into()),
                    Total::Sum(s) => s.to_json(),
                    Total::Counts(m) => J::Object(m.clone()), // (one key per distinct value)
                };
                let first = if marks { Some(f.first) } else { None };
                Some(compact::write(
                    &f.times,
                    f.values.as_deref(),
                    &total,
                    f.k,
                    first,
                    f.counts.as_deref(),
                ))
            }
        }
    }
}

impl Full {
    /// The layout a (not) grained window keeps: an exact window's entries are one event
    /// each; a grained one's are spelled out again, each event at its entry's time.
    fn fit(mut self, grained: bool) -> Full {
        match (grained, self.counts.take()) {
            (true, None) => self.counts = Some(vec![1; self.times.len()]),
            (true, c) => self.counts = c,
            (false, Some(c)) => {
                self.times = spread(&self.times, &c);
                if let Some(values) = self.values.as_mut() {
                    *values = spread(values, &c);
                }
                self.k = c[..self.k].iter().sum::<u64>() as usize;
            }
            (false, None) => {}
        }
        self
    }
}

/// Each item `m` times over, for its count `m`.
fn spread<T: Clone>(items: &[T], counts: &[u64]) -> Vec<T> {
    items
        .iter()
        .zip(counts)
        .flat_map(|(x, &m)| (0..m).map(move |_| x.clone()))
        .collect()
}

fn total_of(total: J) -> Result<Total, String> {
    Ok(match total {
        J::Null => Total::Null,
        J::Number(n) => Total::Count(n.as_i64().ok_or("a count")?),
        J::Object(m) => Total::Counts(m),
        t @ J::Array(_) => Total::Sum(SumP::from_json(&t)?),
        _ => return Err("an unknown total".into()),
    })
}

impl TraitDef {
    pub fn intern(&mut self, py: Python<'_>) {
        self.filters.intern(py);
        self.path_keys = self
            .path
            .iter()
            .flatten()
            .map(|s| PyString::intern_bound(py, s).unbind())
            .collect();
    }

    pub fn marks(&self) -> bool {
        self.ty.marks()
    }

    pub fn grained(&self) -> bool {
        self.grain > 0
    }

    /// `Window.leave`: when an event at `ts` stops counting.
    fn leave(&self, ts: i64) -> i64 {
        if self.grain > 0 {
            (ts.div_euclid(self.grain) + 1)
                .saturating_mul(self.grain)
                .saturating_add(self.b)
        } else {
            ts.saturating_add(self.b)
        }
    }

    fn numeric(&self) -> bool {
        self.ty.summed() || (matches!(self.ty, Type::Min | Type::Max) && !self.textual)
    }

    /// `CompiledTrait.contribution`: what one event adds (None: it does not count).
    fn contribution(&self, props: &Bound<'_, PyDict>) -> PyResult<Option<J>> {
        if self.path.is_none() {
            return Ok(Some(J::Number(1.into())));
        }
        let py = props.py();
        let mut obj = props.clone().into_any();
        for seg in &self.path_keys {
            let Ok(d) = obj.downcast_exact::<PyDict>() else {
                return Ok(None);
            };
            match d.get_item(seg.bind(py))? {
                Some(v) if !v.is_none() => obj = v,
                _ => return Ok(None),
            }
        }
        let v = obj;
        if self.numeric() {
            let n = as_number(&Val::from_py(&v));
            if let (true, Some(Num::F(f))) = (self.ty.summed(), n) {
                if !(-MAX_FLOAT_TERM..=MAX_FLOAT_TERM).contains(&f) {
                    return Ok(None);
                }
            }
            return Ok(n.map(num_json));
        }
        if self.ty.keyed() {
            return Ok(Some(J::String(value_key(&json_of(&v)?))));
        }
        if self.textual {
            if v.is_exact_instance_of::<PyDict>() || v.is_exact_instance_of::<PyList>() {
                return Ok(None);
            }
            return Ok(Some(J::String(value_key(&json_of(&v)?))));
        }
        Ok(Some(json_of(&v)?))
    }

    fn zero(&self) -> Total {
        match self.ty {
            Type::Counter => Total::Count(0),
            Type::Sum | Type::Avg => Total::Sum(SumP::default()),
            t if t.keyed() => Total::Counts(Map::new()),
            _ => Total::Null,
        }
    }

    /// `CompiledTrait._current`: the full layout of a state that is none or just `first`.
    fn current<'s>(&self, st: &'s mut TState) -> &'s mut Full {
        if !matches!(st, TState::Full(_)) {
            let first = if let TState::First(f) = st {
                Some(*f)
            } else {
                None
            };
            *st = TState::Full(Full {
                times: vec![],
                values: if self.ty == Type::Counter {
                    None
                } else {
                    Some(vec![])
                },
                total: self.zero(),
                k: 0,
                first: if self.marks() { first } else { None },
                counts: if self.grained() { Some(vec![]) } else { None },
            });
        }
        match st {
            TState::Full(f) => f,
            _ => unreachable!(),
        }
    }

    fn merge(&self, total: &mut Total, c: Option<&J>, sign: i64) {
        match total {
            Total::Count(n) => *n += sign,
            Total::Sum(s) => s.add(c.expect("a sum keeps its contributions"), sign),
            Total::Counts(m) => {
                let key = match c {
                    Some(J::String(s)) => s.clone(),
                    _ => unreachable!("keyed contributions are strings"),
                };
                let n = m.get(&key).and_then(J::as_i64).unwrap_or(0) + sign;
                if n != 0 {
                    m.insert(key, J::Number(n.into()));
                } else {
                    m.shift_remove(&key);
                }
            }
            Total::Null => {}
        }
    }

    /// `merge` of an entry that is `m` events (a grained window's), one event at a time
    /// as the Python engine adds them (a sum's float partials depend on the order).
    fn merge_n(&self, total: &mut Total, c: Option<&J>, sign: i64, m: u64) {
        match total {
            Total::Sum(_) => (0..m).for_each(|_| self.merge(total, c, sign)),
            _ => self.merge(total, c, sign * m as i64),
        }
    }

    /// `CompiledTrait._same`: can entries i and j of one grain be one entry?
    fn same(&self, s: &Full, i: usize, j: usize) -> bool {
        match s.values.as_ref() {
            None => true,
            Some(_) if self.ty == Type::First => true,
            Some(_) if self.ty == Type::Last => false,
            Some(v) => v[i] == v[j], // (serde_json: 1 and 1.0 differ, as type() does)
        }
    }

    /// `_fold`: entry `out` (counting) becomes part of entry `into`.
    fn fold(&self, s: &mut Full, into: usize, out: usize) {
        let counts = s.counts.as_mut().expect("a grained window keeps counts");
        counts[into] += counts[out];
        counts.remove(out);
        s.times.remove(out);
        if let Some(v) = s.values.as_mut() {
            v.remove(out);
        }
        s.k -= 1;
    }

    /// `_fold_back`: into the nearest earlier same entry of x's grain; whether it did.
    fn fold_back(&self, s: &mut Full, x: usize) -> bool {
        let key = s.times[x].div_euclid(self.grain);
        for j in (0..x).rev() {
            if s.times[j].div_euclid(self.grain) != key {
                break;
            }
            if self.same(s, j, x) {
                self.fold(s, j, x);
                return true;
            }
        }
        false
    }

    /// `_fold_new`: a late event's entry i, counting at once.
    fn fold_new(&self, s: &mut Full, i: usize) {
        if self.fold_back(s, i) {
            return;
        }
        let key = s.times[i].div_euclid(self.grain);
        let mut j = i + 1;
        while j < s.k && s.times[j].div_euclid(self.grain) == key {
            if self.same(s, i, j) {
                self.fold(s, i, j);
                return;
            }
            j += 1;
        }
    }

    /// `CompiledTrait.ingest` on a plain exact window: whether the event counts at all.
    pub fn ingest(
        &self,
        st: &mut TState,
        props: &Bound<'_, PyDict>,
        ts: i64,
        now: i64,
    ) -> PyResult<bool> {
        if !self.filters.is_empty() && !self.filters.hold(props)? {
            return Ok(false);
        }
        if self.leave(ts) <= now {
            return self.mark(st, props, ts.saturating_add(self.a));
        }
        let Some(c) = self.contribution(props)? else {
            return Ok(false);
        };
        let ends = self.ty.ends();
        let marks = self.marks();
        let first = ts.saturating_add(self.a);
        let keyed_c = if ends { Some(value_key(&c)) } else { None };
        let s = self.current(st);
        if marks && s.first.is_none_or(|f| first < f) {
            s.first = Some(first);
        }
        let n = s.times.len();
        let i = if n == 0 || s.times[n - 1] < ts {
            n
        } else {
            let right = s.times.partition_point(|&x| x <= ts);
            if let Some(vk) = &keyed_c {
                let values = s.values.as_ref().expect("first / last keep values");
                let mut j = s.times.partition_point(|&x| x < ts);
                while j < right && value_key(&values[j]).as_str() <= vk.as_str() {
                    j += 1;
                }
                j
            } else {
                right
            }
        };
        s.times.insert(i, ts);
        if let Some(values) = s.values.as_mut() {
            values.insert(i, c.clone());
        }
        if let Some(counts) = s.counts.as_mut() {
            counts.insert(i, 1);
        }
        if i < s.k {
            s.k += 1;
            self.merge(&mut s.total, Some(&c), 1);
            if self.grained() {
                self.fold_new(s, i);
            }
        }
        Ok(true)
    }

    /// `CompiledTrait._mark`: an event that counted only before now still sets `first`.
    fn mark(&self, st: &mut TState, props: &Bound<'_, PyDict>, first: i64) -> PyResult<bool> {
        if !self.marks() || self.contribution(props)?.is_none() {
            return Ok(false);
        }
        Ok(match st {
            TState::None => {
                *st = TState::First(first);
                true
            }
            TState::First(f) => {
                if first < *f {
                    *f = first;
                    true
                } else {
                    false
                }
            }
            TState::Full(s) => {
                if s.first.is_some_and(|f| f <= first) {
                    false
                } else {
                    s.first = Some(first);
                    true
                }
            }
        })
    }

    /// `_idle`: the value when no kept event counts.
    fn idle(&self, first: Option<i64>, t: i64) -> Out {
        if first.is_some_and(|f| f <= t) {
            match self.ty {
                Type::Counter | Type::Sum | Type::UniqueCount => Out::Int(0),
                _ => Out::None,
            }
        } else {
            Out::None
        }
    }

    /// `_nothing_counts`: (value, due), the state left as `first` alone or nothing.
    fn nothing_counts(&self, st: &mut TState, first: Option<i64>, t: i64) -> (Out, i64) {
        match first {
            Some(f) if self.marks() => {
                *st = TState::First(f);
                (self.idle(Some(f), t), if f <= t { INF } else { f })
            }
            _ => {
                *st = TState::None;
                (Out::None, INF)
            }
        }
    }

    /// `_evaluate_exact_or_none` at `t`: (value, next instant it can change or INF);
    /// `st` pruned.
    pub fn evaluate(&self, py: Python<'_>, st: &mut TState, t: i64) -> PyResult<(Out, i64)> {
        match st {
            TState::None => return Ok((Out::None, INF)),
            TState::First(f) => {
                let f = *f;
                return Ok(self.nothing_counts(st, Some(f), t));
            }
            TState::Full(_) => {}
        }
        let TState::Full(s) = st else { unreachable!() };
        if self.grained() {
            self.prune_grained(s, t);
        } else {
            self.prune_exact(s, t);
        }
        let k = s.k;
        let first = if self.marks() { s.first } else { None };
        if s.times.is_empty() {
            return Ok(self.nothing_counts(st, first, t));
        }
        let value = if k == 0 {
            self.idle(first, t)
        } else {
            self.value(py, s)?
        };
        let mut due = self.leave(s.times[0]);
        if k < s.times.len() {
            due = due.min(s.times[k].saturating_add(self.a));
        }
        Ok((value, due))
    }

    /// `_evaluate_exact`'s upkeep at `t`: entries start counting, leave, and the ones no
    /// answer needs go.
    fn prune_exact(&self, s: &mut Full, t: i64) {
        let limit = t.saturating_sub(self.a);
        let n = s.times.len();
        let lifted = self.ty.invertible(); // (the others keep no total: skip the loops)
        let mut k = s.k;
        while k < n && s.times[k] <= limit {
            if lifted {
                self.merge(&mut s.total, s.values.as_ref().map(|v| &v[k]), 1);
            }
            k += 1;
        }
        let cut = t.saturating_sub(self.b);
        let i = s.times.partition_point(|&x| x <= cut).min(n);
        // (an entry that leaves has counted: it entered before it left)
        if i > 0 {
            if lifted {
                for x in 0..i {
                    self.merge(&mut s.total, s.values.as_ref().map(|v| &v[x]), -1);
                }
            }
            s.times.drain(..i);
            if let Some(v) = s.values.as_mut() {
                v.drain(..i);
            }
            k -= i;
        }
        if k > 1 {
            k = self.staircase(s, k);
        }
        s.k = k;
    }

    /// `_evaluate_grained`'s upkeep: entries that start counting fold into their grain's;
    /// the entries of every grain that ended at least `b` ago leave.
    fn prune_grained(&self, s: &mut Full, t: i64) {
        let lifted = self.ty.invertible();
        let counts = s.counts.as_ref().expect("a grained window keeps counts");
        let k0 = s.k;
        let mut k = k0;
        while k < s.times.len() && s.times[k] <= t {
            if lifted {
                self.merge_n(&mut s.total, s.values.as_ref().map(|v| &v[k]), 1, counts[k]);
            }
            k += 1;
        }
        s.k = k;
        let mut x = k0;
        while x < s.k {
            if !self.fold_back(s, x) {
                x += 1;
            }
        }
        let cut = t
            .saturating_sub(self.b)
            .div_euclid(self.grain)
            .saturating_mul(self.grain);
        let i = s.times.partition_point(|&x| x < cut);
        if i > 0 {
            let counts = s.counts.as_mut().expect("a grained window keeps counts");
            if lifted {
                for x in 0..i {
                    self.merge_n(
                        &mut s.total,
                        s.values.as_ref().map(|v| &v[x]),
                        -1,
                        counts[x],
                    );
                }
            }
            counts.drain(..i);
            s.times.drain(..i);
            if let Some(v) = s.values.as_mut() {
                v.drain(..i);
            }
            s.k -= i;
        }
        if s.k > 1 {
            s.k = self.staircase(s, s.k);
        }
    }

    fn value(&self, py: Python<'_>, s: &Full) -> PyResult<Out> {
        Ok(match (&s.total, self.ty) {
            (Total::Count(n), _) => Out::Int(*n as i128),
            (Total::Sum(p), ty) => p.value(ty == Type::Avg),
            (Total::Counts(m), ty) => {
                if m.is_empty() {
                    return Ok(if ty == Type::UniqueCount {
                        Out::Int(0)
                    } else {
                        Out::None
                    });
                }
                match ty {
                    Type::UniqueCount => Out::Int(m.len() as i128),
                    Type::UniqueList => Out::Json(J::Array(
                        in_order(py, m.keys().collect())?
                            .into_iter()
                            .map(J::String)
                            .collect(),
                    )),
                    _ => {
                        let top = m.values().filter_map(J::as_i64).max().unwrap_or(0);
                        if top < self.min_frequency {
                            return Ok(Out::None);
                        }
                        let best: Vec<&String> = m
                            .iter()
                            .filter(|(_, c)| c.as_i64() == Some(top))
                            .map(|(k, _)| k)
                            .collect();
                        let pick = if best.len() == 1 {
                            best[0].clone()
                        } else {
                            in_order(py, best)?.swap_remove(0)
                        };
                        Out::Json(J::String(pick))
                    }
                }
            }
            (Total::Null, _) => Out::Json(s.values.as_ref().expect("values kept")[0].clone()),
        })
    }

    /// `_staircase_columns`: drop the counting entries a newer counting one beats; the new k.
    fn staircase(&self, s: &mut Full, k: usize) -> usize {
        let values = match (self.ty, s.values.as_mut()) {
            (Type::Min | Type::Max | Type::Last, Some(v)) => v,
            _ => return k,
        };
        if self.ty == Type::Last {
            s.times.drain(..k - 1);
            values.drain(..k - 1);
            if let Some(c) = s.counts.as_mut() {
                c.drain(..k - 1);
            }
            return 1;
        }
        let max = self.ty == Type::Max;
        let mut keep: Vec<usize> = Vec::with_capacity(k);
        let mut best: Option<usize> = None;
        for i in (0..k).rev() {
            // better(best, v): max `best >= v`, min `best <= v`
            let beaten =
                best.is_some_and(|b| match ordered(&values[b], &values[i], self.textual) {
                    Some(o) => {
                        if max {
                            o != Ordering::Less
                        } else {
                            o != Ordering::Greater
                        }
                    }
                    None => false,
                });
            if !beaten {
                keep.push(i);
                best = Some(i);
            }
        }
        if keep.len() != k {
            keep.reverse();
            let times: Vec<i64> = keep.iter().map(|&i| s.times[i]).collect();
            let vals: Vec<J> = keep.iter().map(|&i| values[i].clone()).collect();
            s.times.splice(..k, times);
            values.splice(..k, vals);
            if let Some(c) = s.counts.as_mut() {
                let kept: Vec<u64> = keep.iter().map(|&i| c[i]).collect();
                c.splice(..k, kept);
            }
        }
        keep.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsum_is_exact() {
        assert_eq!(fsum([0.1, 0.2, 0.3]), 0.6);
        assert_eq!(fsum([1e100, 1.0, -1e100, 1e-100]), 1.0);
        assert_eq!(fsum([]), 0.0);
    }

    #[test]
    fn integer_division_rounds_once() {
        assert_eq!(true_divide(7, 2), 3.5);
        assert_eq!(true_divide(-1, 3), -1.0 / 3.0);
        let big: i128 = (1 << 60) + 1;
        assert_eq!(true_divide(big, 1), 1152921504606846976.0);
        assert_eq!(true_divide((1 << 64) * 3 + 1, 3), 18446744073709551616.0);
    }

    #[test]
    fn paths_split_on_unescaped_dots() {
        assert_eq!(split_path("a.b"), vec!["a", "b"]);
        assert_eq!(split_path(r"a\.b"), vec!["a.b"]);
    }
}
