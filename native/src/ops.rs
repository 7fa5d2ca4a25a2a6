//! `operators.py`'s equality semantics for the operators the core supports.

use std::cmp::Ordering;

use crate::value::Val;

/// `operators.as_number` (numbers, and strings in plain decimal notation; never booleans).
#[derive(Debug, Clone, Copy)]
pub enum Num {
    I(i128),
    F(f64),
}

fn is_decimal(s: &str) -> bool {
    // -?[0-9]+(?:\.[0-9]+)?
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && b[i] == b'-' {
        i += 1;
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == start {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if b[i] != b'.' {
        return false;
    }
    i += 1;
    let frac = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i > frac && i == b.len()
}

const INT_MIN: i128 = -(1i128 << 63);
const INT_MAX: i128 = (1i128 << 64) - 1;

pub fn as_number(x: &Val) -> Option<Num> {
    match x {
        Val::Int(i) => Some(Num::I(*i)),
        Val::Float(f) => f.is_finite().then_some(Num::F(*f)),
        Val::Str(s) => {
            if !is_decimal(s) {
                return None;
            }
            if !s.contains('.') && s.len() <= 21 {
                if let Ok(n) = s.parse::<i128>() {
                    if (INT_MIN..=INT_MAX).contains(&n) {
                        return Some(Num::I(n));
                    }
                }
            }
            let f: f64 = s.parse().ok()?;
            f.is_finite().then_some(Num::F(f))
        }
        _ => None,
    }
}

/// Python's exact int/float comparison (`1 == 1.0`, `2**53 + 1 != 2.0**53`).
fn num_eq(a: Num, b: Num) -> bool {
    match (a, b) {
        (Num::I(x), Num::I(y)) => x == y,
        (Num::F(x), Num::F(y)) => x == y,
        (Num::I(i), Num::F(f)) | (Num::F(f), Num::I(i)) => {
            int_float_cmp(i, f) == Some(Ordering::Equal)
        }
    }
}

/// Python's exact `a < b` / `==` / `>` between int and float (`None`: NaN, unordered).
pub fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        (Num::I(i), Num::F(f)) => int_float_cmp(i, f),
        (Num::F(f), Num::I(i)) => int_float_cmp(i, f).map(Ordering::reverse),
    }
}

/// `i` against `f`, exactly (no rounding of `i` to a float).
fn int_float_cmp(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    const LIMIT: f64 = 1.7e38; // inside i128, beyond every i128 we hold (|i| < 2^65)
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f <= -LIMIT {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    let fl = floor as i128;
    Some(match i.cmp(&fl) {
        Ordering::Equal if floor < f => Ordering::Less,
        o => o,
    })
}

/// `operators.equal`: scalar equality with the documented coercions.
pub fn equal(x: &Val, v: &Val) -> bool {
    use Val::*;
    match (x, v) {
        (Null, _) | (_, Null) => false,
        (Bool(a), Bool(b)) => a == b,
        (Int(a), Int(b)) => a == b,
        (Float(a), Float(b)) => a == b,
        (Str(a), Str(b)) => a == b,
        (List(a), List(b)) => list_eq(a, b),
        (Other, Other) => false,
        // a bool equals the text of the other side, case-insensitively; only a string's
        // text can spell `true` / `false`
        (Bool(b), Str(s)) | (Str(s), Bool(b)) => {
            s.to_lowercase() == if *b { "true" } else { "false" }
        }
        (Bool(_), _) | (_, Bool(_)) => false,
        _ => match (as_number(x), as_number(v)) {
            (Some(a), Some(b)) => num_eq(a, b),
            _ => false,
        },
    }
}

/// Python list `==`: element-wise `==` (no coercion between types except int/float).
fn list_eq(a: &[Val], b: &[Val]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| py_eq(x, y))
}

fn py_eq(x: &Val, y: &Val) -> bool {
    use Val::*;
    match (x, y) {
        (Null, Null) => true,
        (Bool(a), Bool(b)) => a == b,
        // Python: True == 1, 1 == 1.0
        (Bool(a), Int(i)) | (Int(i), Bool(a)) => (*a as i128) == *i,
        (Bool(a), Float(f)) | (Float(f), Bool(a)) => (*a as i32 as f64) == *f,
        (Int(a), Int(b)) => a == b,
        (Float(a), Float(b)) => a == b,
        (Int(i), Float(f)) | (Float(f), Int(i)) => num_eq(Num::I(*i), Num::F(*f)),
        (Str(a), Str(b)) => a == b,
        (List(a), List(b)) => list_eq(a, b),
        _ => false,
    }
}

/// `operators._any`: a list matches when one of its elements does.
fn any(x: &Val, pred: impl Fn(&Val) -> bool) -> bool {
    match x {
        Val::List(items) => items.iter().any(pred),
        _ => pred(x),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Equals,
    NotEquals,
    EqualsAnyOf,
    NoneOf,
    Exists,
    NotExists,
    Less,
    Greater,
    AtMost,
    AtLeast,
}

impl Op {
    pub fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "equals" => Op::Equals,
            "not_equals" => Op::NotEquals,
            "equals_any_of" => Op::EqualsAnyOf,
            "none_of" => Op::NoneOf,
            "exists" => Op::Exists,
            "not_exists" => Op::NotExists,
            "less_than" => Op::Less,
            "greater_than" => Op::Greater,
            "at_most" => Op::AtMost,
            "at_least" => Op::AtLeast,
            _ => return None,
        })
    }
}

/// `operators.compile_static(op, value)` applied to `x` (`operands`: the constant, or the
/// `*_any_of` list).
pub fn holds(op: Op, operands: &[Val], x: &Val) -> bool {
    let is_none = matches!(x, Val::Null);
    match op {
        Op::Exists => !is_none,
        Op::NotExists => is_none,
        Op::Equals => any(x, |e| equal(e, &operands[0])),
        Op::NotEquals => !is_none && !any(x, |e| equal(e, &operands[0])),
        Op::EqualsAnyOf => any(x, |e| operands.iter().any(|v| equal(e, v))),
        Op::NoneOf => !is_none && !any(x, |e| operands.iter().any(|v| equal(e, v))),
        Op::Less | Op::Greater | Op::AtMost | Op::AtLeast => {
            let Some(v) = as_number(&operands[0]) else {
                return false;
            };
            let test = |o: Option<Ordering>| match (op, o) {
                (_, None) => false,
                (Op::Less, Some(o)) => o == Ordering::Less,
                (Op::Greater, Some(o)) => o == Ordering::Greater,
                (Op::AtMost, Some(o)) => o != Ordering::Greater,
                (_, Some(o)) => o != Ordering::Less,
            };
            match x {
                // compile_static's fast path: a number is compared as it is (no finiteness
                // test), anything else through `_order` element by element
                Val::Int(i) => test(num_cmp(Num::I(*i), v)),
                Val::Float(f) => test(num_cmp(Num::F(*f), v)),
                _ => any(x, |e| as_number(e).is_some_and(|n| test(num_cmp(n, v)))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_notation_only() {
        assert!(is_decimal("-12") && is_decimal("3.50"));
        assert!(!is_decimal("1e3") && !is_decimal("1.") && !is_decimal(".5") && !is_decimal(""));
    }

    #[test]
    fn coercions() {
        assert!(equal(&Val::Str("5".into()), &Val::Int(5)));
        assert!(equal(&Val::Int(1), &Val::Float(1.0)));
        assert!(equal(&Val::Bool(true), &Val::Str("TRUE".into())));
        assert!(!equal(&Val::Bool(true), &Val::Int(1)));
        assert!(!equal(&Val::Str("a".into()), &Val::Str("A".into())));
    }

    #[test]
    fn exact_int_float_order() {
        let big = (1i128 << 53) + 1;
        assert_eq!(
            int_float_cmp(big, 9007199254740992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(int_float_cmp(3, 2.5), Some(Ordering::Greater));
        assert_eq!(int_float_cmp(-3, -2.5), Some(Ordering::Less));
        assert_eq!(int_float_cmp(2, 2.0), Some(Ordering::Equal));
        assert_eq!(int_float_cmp(2, f64::NAN), None);
        let age = [Val::Int(30)];
        assert!(holds(Op::Less, &age, &Val::Str("29.5".into())));
        assert!(!holds(Op::Less, &age, &Val::Bool(true)));
        assert!(holds(
            Op::AtLeast,
            &age,
            &Val::List(vec![Val::Str("x".into()), Val::Int(31)])
        ));
    }
}
