//! Profile values as the operators see them (Python objects converted once per read).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyLong, PyString};

/// A trait value: the JSON types, `Other` for anything no supported operator matches
/// (objects, and integers beyond 128 bits).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    Other,
}

impl Val {
    pub fn from_py(x: &Bound<'_, PyAny>) -> Val {
        if x.is_none() {
            Val::Null
        } else if x.is_instance_of::<PyBool>() {
            Val::Bool(x.is_truthy().unwrap_or(false))
        } else if x.is_exact_instance_of::<PyLong>() {
            x.extract::<i128>().map(Val::Int).unwrap_or(Val::Other)
        } else if x.is_exact_instance_of::<PyFloat>() {
            x.extract::<f64>().map(Val::Float).unwrap_or(Val::Other)
        } else if x.is_exact_instance_of::<PyString>() {
            x.extract::<String>().map(Val::Str).unwrap_or(Val::Other)
        } else if let Ok(l) = x.downcast_exact::<PyList>() {
            Val::List(l.iter().map(|e| Val::from_py(&e)).collect())
        } else {
            Val::Other
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Val {
        use serde_json::Value as J;
        match v {
            J::Null => Val::Null,
            J::Bool(b) => Val::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Val::Int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    Val::Int(u as i128)
                } else {
                    n.as_f64().map(Val::Float).unwrap_or(Val::Other)
                }
            }
            J::String(s) => Val::Str(s.clone()),
            J::Array(a) => Val::List(a.iter().map(Val::from_json).collect()),
            J::Object(_) => Val::Other,
        }
    }
}

/// Reads traits and memberships off a `ProfileRecord` (its three TraitValue dicts).
pub struct Reader<'py> {
    audiences: Bound<'py, PyDict>,
    computed: Bound<'py, PyDict>,
    custom: Bound<'py, PyDict>,
    value: Bound<'py, PyString>,
}

impl<'py> Reader<'py> {
    pub fn new(profile: &Bound<'py, PyAny>) -> PyResult<Self> {
        let py = profile.py();
        Ok(Reader {
            audiences: profile
                .getattr(intern!(py, "audiences"))?
                .downcast_into::<PyDict>()?,
            computed: profile
                .getattr(intern!(py, "computed_traits"))?
                .downcast_into::<PyDict>()?,
            custom: profile
                .getattr(intern!(py, "traits"))?
                .downcast_into::<PyDict>()?,
            value: intern!(py, "value").clone(),
        })
    }

    pub fn py(&self) -> Python<'py> {
        self.audiences.py()
    }

    fn value_of(
        &self,
        d: &Bound<'py, PyDict>,
        key: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match d.get_item(key)? {
            None => Ok(None),
            Some(tv) if tv.is_none() => Ok(None),
            Some(tv) => Ok(Some(tv.getattr(&self.value)?)),
        }
    }

    /// `TraitLeaf.read` for a one-segment path.
    pub fn trait_value(&self, source: Source, key: &Bound<'py, PyString>) -> PyResult<Val> {
        let found = match source {
            Source::Custom => self.value_of(&self.custom, key)?,
            Source::Computed => self.value_of(&self.computed, key)?,
            // ProfileRecord.trait: audience, computed, then custom keys
            Source::Any => match self.value_of(&self.audiences, key)? {
                Some(v) => Some(v),
                None => match self.value_of(&self.computed, key)? {
                    Some(v) => Some(v),
                    None => self.value_of(&self.custom, key)?,
                },
            },
        };
        Ok(found.map(|x| Val::from_py(&x)).unwrap_or(Val::Null))
    }

    /// `trait_value(Source::Any, key)` with `computed` in place of the stored computed value.
    pub fn any_over(&self, key: &Bound<'py, PyString>, computed: &Val) -> PyResult<Val> {
        if let Some(v) = self.value_of(&self.audiences, key)? {
            return Ok(Val::from_py(&v));
        }
        if !matches!(computed, Val::Null) {
            return Ok(computed.clone());
        }
        Ok(self
            .value_of(&self.custom, key)?
            .map(|x| Val::from_py(&x))
            .unwrap_or(Val::Null))
    }

    /// The stored value of a computed trait.
    pub fn computed_value(
        &self,
        key: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.value_of(&self.computed, key)
    }

    /// `conditions._member`: whether the profile's stored membership is `true`.
    pub fn member(&self, key: &Bound<'py, PyString>) -> PyResult<bool> {
        Ok(match self.value_of(&self.audiences, key)? {
            Some(v) => v.is_instance_of::<PyBool>() && v.is_truthy()?,
            None => false,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Any,
    Custom,
    Computed,
}
