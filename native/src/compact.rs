//! The compact text of a computed trait's window (`engine/state_text.py` reads it too).
//!
//! Why not the JSON layout: a window keeps one entry per event, and a busy profile's
//! windows are most of its stored record — decoded, re-encoded, stored, changelogged and
//! compressed whole on every event. Times as JSON are 13 digits and a comma each, and
//! keyed values repeat the same few strings with their quotes (escaped again inside the
//! record's JSON). Here times are zigzag deltas in base64-VLQ digits (the alphabet of
//! source maps: JSON-safe, no escaping), string values an index into a table of the
//! distinct ones; what is small stays JSON. The text is still a `str`, so the record,
//! its changelog and profile transfers do not change shape.
//!
//! Layout (after the marker `~`), every number a VLQ:
//!   n, n time deltas (the first from 0), k,
//!   first: 0 (no slot: 4-slot layout), 1 (slot, null), 2 + the time — plus 3 when a
//!   grained window's counts follow: n times (events in the entry − 1),
//!   values: 0 (null), 1 + n indices into the table, 2 (the values inline),
//!   then the JSON `[table | values | null, total]`.

use serde_json::Value as J;
use std::collections::HashMap;

pub const MARK: char = '~';

const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const MORE: u8 = 32; // a digit's continuation bit; five data bits below it

fn digit_value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    })
}

fn put(out: &mut String, mut v: u64) {
    loop {
        let low = (v & 31) as u8;
        v >>= 5;
        if v == 0 {
            out.push(DIGITS[low as usize] as char);
            return;
        }
        out.push(DIGITS[(low | MORE) as usize] as char);
    }
}

fn put_signed(out: &mut String, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads VLQ numbers from the front of a text.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, pos: usize) -> Self {
        Reader {
            bytes: text.as_bytes(),
            pos,
        }
    }

    fn get(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let c = *self.bytes.get(self.pos).ok_or("compact state cut short")?;
            let d = digit_value(c)
                .ok_or_else(|| format!("compact state: {:?} at {}", c as char, self.pos))?;
            self.pos += 1;
            if shift > 63 {
                return Err("compact state: a number beyond 64 bits".into());
            }
            v |= u64::from(d & 31) << shift;
            if d & MORE == 0 {
                return Ok(v);
            }
            shift += 5;
        }
    }

    fn get_signed(&mut self) -> Result<i64, String> {
        let z = self.get()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn count(&mut self, what: &str) -> Result<usize, String> {
        let n = self.get()?;
        // (every entry takes at least one digit: a count beyond the text is corrupt)
        if n > self.bytes.len().saturating_sub(self.pos) as u64 {
            return Err(format!("compact state: {what} {n} beyond the text"));
        }
        Ok(n as usize)
    }
}

/// A window as the compact text holds it, before `traits` gives `total` its meaning.
pub struct Window {
    pub times: Vec<i64>,
    pub values: Option<Vec<J>>,
    pub total: J,
    pub k: usize,
    pub first: Option<i64>,
    pub counts: Option<Vec<u64>>,
}

/// The table of distinct values, when every value is a string and they repeat (None:
/// write them inline). A few distinct values (the common case: pages, categories) are
/// found by comparing; past `SCAN` a hash index takes over.
fn table_of(values: &[J]) -> Option<(Vec<&str>, Vec<usize>)> {
    const SCAN: usize = 16;
    let mut table: Vec<&str> = vec![];
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut at = Vec::with_capacity(values.len());
    for v in values {
        let J::String(s) = v else { return None };
        let s = s.as_str();
        let found = if table.len() <= SCAN {
            table.iter().position(|&x| x == s)
        } else {
            index.get(s).copied()
        };
        if found.is_none() && (table.len() + 1) * 2 > values.len() {
            return None; // (mostly distinct: the indices would only add)
        }
        let i = found.unwrap_or_else(|| {
            table.push(s);
            if table.len() == SCAN + 1 {
                index.extend(table.iter().enumerate().map(|(i, &x)| (x, i)));
            } else if table.len() > SCAN + 1 {
                index.insert(s, table.len() - 1);
            }
            table.len() - 1
        });
        at.push(i);
    }
    Some((table, at))
}

/// `counts`: a grained window's events per entry (`traits`), each at least 1.
pub fn write(
    times: &[i64],
    values: Option<&[J]>,
    total: &J,
    k: usize,
    first: Option<Option<i64>>,
    counts: Option<&[u64]>,
) -> String {
    let mut out = String::with_capacity(8 + times.len() * 5);
    out.push(MARK);
    put(&mut out, times.len() as u64);
    let mut prev = 0i64;
    for &t in times {
        put_signed(&mut out, t.wrapping_sub(prev));
        prev = t;
    }
    put(&mut out, k as u64);
    let counted = if counts.is_some() { 3 } else { 0 };
    match first {
        None => put(&mut out, counted),
        Some(None) => put(&mut out, counted + 1),
        Some(Some(f)) => {
            put(&mut out, counted + 2);
            put_signed(&mut out, f);
        }
    }
    for &m in counts.unwrap_or(&[]) {
        put(&mut out, m - 1);
    }
    let json = match values {
        None => {
            put(&mut out, 0);
            serde_json::to_string(&(J::Null, total))
        }
        Some(vs) => match table_of(vs) {
            Some((table, at)) => {
                put(&mut out, 1);
                for i in at {
                    put(&mut out, i as u64);
                }
                serde_json::to_string(&(table, total))
            }
            None => {
                put(&mut out, 2);
                serde_json::to_string(&(vs, total))
            }
        },
    };
    out.push_str(&json.expect("JSON values serialise"));
    out
}

pub fn read(text: &str) -> Result<Window, String> {
    let mut r = Reader::new(text, MARK.len_utf8());
    let n = r.count("entries")?;
    let mut times = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.get_signed()?);
        times.push(prev);
    }
    let k = r.get()? as usize;
    let slot = r.get()?; // (+ 3: counts follow)
    if slot > 5 {
        return Err(format!("compact state: first slot {slot}"));
    }
    let first = match slot % 3 {
        0 => None,
        1 => Some(None),
        _ => Some(Some(r.get_signed()?)),
    };
    let counts = if slot >= 3 {
        Some(
            (0..n)
                .map(|_| r.get().map(|m| m.saturating_add(1)))
                .collect::<Result<Vec<u64>, String>>()?,
        )
    } else {
        None
    };
    let mode = r.get()?;
    let at = if mode == 1 {
        (0..n)
            .map(|_| r.get().map(|i| i as usize))
            .collect::<Result<Vec<usize>, String>>()?
    } else {
        vec![]
    };
    let (listed, total): (Option<Vec<J>>, J) =
        serde_json::from_str(&text[r.pos..]).map_err(|e| format!("compact state: {e}"))?;
    let values = match (mode, listed) {
        (0, None) => None,
        (1, Some(table)) => Some(
            at.into_iter()
                .map(|i| {
                    table
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("compact state: value {i} not in the table"))
                })
                .collect::<Result<Vec<J>, String>>()?,
        ),
        (2, Some(vs)) if vs.len() == n => Some(vs),
        _ => return Err("compact state: the values do not match their mode".into()),
    };
    if k > n {
        return Err(format!("compact state: {k} counting of {n} entries"));
    }
    Ok(Window {
        times,
        values,
        total,
        k,
        first: first.flatten(),
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_at_the_extremes() {
        for v in [
            0i64,
            1,
            -1,
            31,
            32,
            -33,
            1_788_913_015_160,
            i64::MAX,
            i64::MIN,
        ] {
            let mut s = String::new();
            put_signed(&mut s, v);
            assert_eq!(Reader::new(&s, 0).get_signed().unwrap(), v, "{s}");
        }
        let mut s = String::new();
        put(&mut s, u64::MAX);
        assert_eq!(Reader::new(&s, 0).get().unwrap(), u64::MAX);
    }

    #[test]
    fn a_window_round_trips_in_every_values_mode() {
        let times = vec![i64::MIN, -5, 0, 7, i64::MAX];
        let words: Vec<J> = ["a", "b", "a", "a", "b"]
            .iter()
            .map(|s| J::String(s.to_string()))
            .collect();
        // (past the scanned few distinct values, the hash index: 40 values, each twice)
        let many: Vec<J> = (0..80).map(|i| J::String(format!("v{}", i % 40))).collect();
        let w = read(&write(&vec![0; 80], Some(&many), &J::Null, 0, None, None)).unwrap();
        assert_eq!(w.values.as_deref(), Some(&many[..]));
        let nums: Vec<J> = (0..5).map(|i| J::from(i as f64 * 1.5)).collect();
        let counts = [1u64, 2, 40, u64::MAX, 1];
        for (values, first) in [
            (None, None),
            (Some(&words[..]), Some(None)),
            (Some(&nums[..]), Some(Some(-3))),
        ] {
            for counted in [None, Some(&counts[..])] {
                let text = write(&times, values, &J::from(3), 2, first, counted);
                let w = read(&text).unwrap();
                assert_eq!(w.times, times);
                assert_eq!(w.values.as_deref(), values);
                assert_eq!(w.counts.as_deref(), counted);
                assert_eq!((w.total, w.k, w.first), (J::from(3), 2, first.flatten()));
            }
        }
    }

    #[test]
    fn a_damaged_text_is_an_error() {
        for counts in [None, Some(&[1u64, 3, 1][..])] {
            let text = write(&[1, 2, 3], None, &J::Null, 1, None, counts);
            for cut in 1..text.len() {
                assert!(read(&text[..cut]).is_err(), "{}", &text[..cut]);
            }
        }
        assert!(read("~!").is_err());
        assert!(matches!(read("~BAAG[null,0]"), Err(e) if e.contains("first slot 6")));
    }
}
