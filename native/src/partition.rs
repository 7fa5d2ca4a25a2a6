//! Kafka's default partitioner (Java `Utils.murmur2`, `toPositive(h) % n`): every record a
//! worker produces by key is placed here, so it must agree bit for bit with the Python
//! `engage_stream.stream.producing.murmur2` (tests/stream/test_producing.py checks both
//! against aiokafka's).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

const M: u32 = 0x5bd1_e995;

pub fn murmur2_hash(data: &[u8]) -> u32 {
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Kafka's murmur2 of `data` (unsigned, as aiokafka returns it).
#[pyfunction]
pub fn murmur2(data: &[u8]) -> u32 {
    murmur2_hash(data)
}

/// The partition of `n` that Kafka's default partitioner puts `key` in.
#[pyfunction]
pub fn partition_for(key: &[u8], n: u32) -> PyResult<u32> {
    if n == 0 {
        return Err(PyValueError::new_err("a topic has at least one partition"));
    }
    Ok((murmur2_hash(key) & 0x7fff_ffff) % n)
}
