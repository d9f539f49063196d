//! The model's text weights: feature id → one weight per topic, every row side by side in one
//! list. Saved packed (the ids and the weights as little-endian bytes, base64): a model's
//! hundred thousand weights written as JSON numbers took 57 million instructions to parse,
//! the largest part of a command's start; packed, the whole model loads in 13 million, and
//! every weight comes back bit for bit. Models saved before (format 3: a JSON object of
//! rows) are still read.

use super::features::FeatureId;
use base64::Engine as _;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Rows of `k` weights by feature id.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    k: usize,
    /// Feature id → its row's index in `values`.
    table: Table,
    /// Each row's feature id, in row order (what is saved).
    ids: Vec<FeatureId>,
    values: Vec<f32>,
}

/// The same ids and weights are the same model (the table follows from them).
impl PartialEq for Weights {
    fn eq(&self, other: &Weights) -> bool {
        self.k == other.k && self.ids == other.ids && self.values == other.values
    }
}

/// Feature id → row, by linear probing from the slot the id's high bits pick. A request's
/// features are looked up in a model of tens of thousands of rows that the filing thread's
/// other work (the store, the search index) has pushed out of the caches: each lookup is a
/// wait for memory. One slot is one cache line's quarter, so a lookup is mostly one line
/// (a general hash map reads its control bytes, then its slot), and [`Weights::rows_of`]
/// asks for every slot, then every row, before reading any, so the waits overlap.
#[derive(Debug, Clone)]
struct Table {
    slots: Box<[Slot]>,
    /// 64 minus the table's size in bits: the slot of an id is its mixed top bits.
    shift: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: FeatureId,
    /// [`VACANT`] when no id is here.
    row: u32,
}

const VACANT: u32 = u32::MAX;

/// An empty table that can be probed like any other (no special case for no model).
impl Default for Table {
    fn default() -> Table {
        Table::with_ids(&[]).expect("no ids, none twice")
    }
}

impl Table {
    fn with_ids(ids: &[FeatureId]) -> Result<Table, FeatureId> {
        // At most 60% full: a miss (a word the model never saw) stops at a vacant slot
        // within a line or two.
        let bits = (ids.len() * 5 / 3 + 1)
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let mut t = Table {
            slots: vec![Slot { id: 0, row: VACANT }; 1 << bits].into_boxed_slice(),
            shift: 64 - bits,
        };
        for (row, &id) in ids.iter().enumerate() {
            match t.probe(id) {
                Ok(_) => return Err(id),
                Err(vacant) => {
                    t.slots[vacant] = Slot {
                        id,
                        row: row as u32,
                    }
                }
            }
        }
        Ok(t)
    }

    /// The slot holding `id`, or else the vacant slot where probing for it stopped. The
    /// table is never full, so probing always stops.
    fn probe(&self, id: FeatureId) -> Result<usize, usize> {
        let mut i = self.start(id);
        loop {
            let slot = self.slots[i];
            if slot.row == VACANT {
                return Err(i);
            }
            if slot.id == id {
                return Ok(i);
            }
            i = (i + 1) & (self.slots.len() - 1);
        }
    }

    /// Where probing for `id` begins. Ids are hashes already, but pair ids and 4-gram ids
    /// are mixed differently: one more multiply spreads them all alike.
    fn start(&self, id: FeatureId) -> usize {
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn find(&self, id: FeatureId) -> Option<u32> {
        self.probe(id).ok().map(|i| self.slots[i].row)
    }
}

/// Asks the processor for the cache line holding `p`, without waiting for it.
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Weights {
    /// Rows of `k` weights each, from `(id, row)` pairs; saved in ascending id order, so the
    /// same model is the same file.
    pub fn from_rows(k: usize, rows: impl IntoIterator<Item = (FeatureId, Vec<f32>)>) -> Weights {
        let mut rows: Vec<(FeatureId, Vec<f32>)> = rows.into_iter().collect();
        // Stable: of two rows for one id (which training never gives), the first is kept.
        rows.sort_by_key(|(id, _)| *id);
        rows.dedup_by_key(|(id, _)| *id);
        let mut values = Vec::with_capacity(rows.len() * k);
        for (_, row) in &rows {
            assert_eq!(row.len(), k, "a weight row has one weight per topic");
            values.extend_from_slice(row);
        }
        let ids: Vec<FeatureId> = rows.into_iter().map(|(id, _)| id).collect();
        let table = Table::with_ids(&ids).expect("ids deduplicated");
        Weights {
            k,
            table,
            ids,
            values,
        }
    }

    /// The feature's weights, one per topic, if the model has them.
    pub fn row(&self, id: FeatureId) -> Option<&[f32]> {
        self.table.find(id).map(|i| self.row_at(i))
    }

    /// Row `i` of `values`.
    fn row_at(&self, i: u32) -> &[f32] {
        let i = i as usize;
        &self.values[i * self.k..(i + 1) * self.k]
    }

    /// [`Weights::row`] of each of `features` (an id and its value) that the model has, with
    /// the id and the value, appended to `out` in the order given. Every slot is asked for
    /// before any is read, then every row: the memory waits of a request's features overlap.
    pub fn rows_of<'w>(
        &'w self,
        features: impl Iterator<Item = (FeatureId, f32)> + Clone,
        out: &mut Vec<(FeatureId, &'w [f32], f32)>,
    ) {
        for (id, _) in features.clone() {
            prefetch(&self.table.slots[self.table.start(id)]);
        }
        for (id, v) in features {
            if let Some(row) = self.row(id) {
                if let Some(first) = row.first() {
                    prefetch(first);
                }
                out.push((id, row, v));
            }
        }
    }

    /// Weights per row (the model's number of topics).
    pub fn width(&self) -> usize {
        self.k
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Serialize for Weights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ids: Vec<u8> = self.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        let values: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("k", &self.k)?;
        m.serialize_entry("ids", &b64().encode(ids))?;
        m.serialize_entry("rows", &b64().encode(values))?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Weights, D::Error> {
        d.deserialize_map(WeightsVisitor)
    }
}

struct WeightsVisitor;

impl<'de> Visitor<'de> for WeightsVisitor {
    type Value = Weights;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("packed weights {k, ids, rows}, or an object of weight rows by feature id")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Weights, A::Error> {
        let (mut k, mut ids, mut values) = (None::<usize>, None::<String>, None::<String>);
        // Format 3: {"<id>": [w, …], …}, rows of equal width.
        let mut legacy: Vec<(FeatureId, Vec<f32>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_ref() {
                "k" => k = Some(map.next_value()?),
                "ids" => ids = Some(map.next_value()?),
                "rows" => values = Some(map.next_value()?),
                id => {
                    let id: FeatureId = id
                        .parse()
                        .map_err(|_| de::Error::custom(format!("`{id}` is not a feature id")))?;
                    legacy.push((id, map.next_value()?));
                }
            }
        }
        let packed = k.is_some() || ids.is_some() || values.is_some();
        if packed && !legacy.is_empty() {
            return Err(de::Error::custom("packed weights mixed with weight rows"));
        }
        if !packed {
            let k = legacy.first().map_or(0, |(_, r)| r.len());
            if legacy.iter().any(|(_, r)| r.len() != k) {
                return Err(de::Error::custom("weight rows of different lengths"));
            }
            let mut ids: Vec<FeatureId> = legacy.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return Err(de::Error::custom(format!("feature {} has two rows", w[0])));
            }
            return Ok(Weights::from_rows(k, legacy));
        }
        let (Some(k), Some(ids), Some(values)) = (k, ids, values) else {
            return Err(de::Error::custom(
                "packed weights need `k`, `ids` and `rows`",
            ));
        };
        let bytes = |what: &str, s: &str, unit: usize| {
            let b = b64()
                .decode(s)
                .map_err(|e| de::Error::custom(format!("`{what}`: {e}")))?;
            if b.len() % unit != 0 {
                return Err(de::Error::custom(format!("`{what}`: a partial number")));
            }
            Ok(b)
        };
        let ids: Vec<FeatureId> = bytes("ids", &ids, 8)?
            .chunks_exact(8)
            .map(|c| FeatureId::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let values: Vec<f32> = bytes("rows", &values, 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if values.len() != ids.len() * k {
            return Err(de::Error::custom(format!(
                "{} weights for {} rows of {k}",
                values.len(),
                ids.len()
            )));
        }
        let table = Table::with_ids(&ids)
            .map_err(|id| de::Error::custom(format!("feature {id} has two rows")))?;
        Ok(Weights {
            k,
            table,
            ids,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_found_probing_past_the_table_end_and_absent_ids_are_not() {
        // Ids that all start probing at the last slot of a 16-slot table: each one more
        // slot along, round the end to the first.
        let probe = Weights::from_rows(1, [(0, vec![0.0])]);
        let last = probe.table.slots.len() - 1;
        let crowded: Vec<FeatureId> = (1..)
            .filter(|&id| probe.table.start(id) == last)
            .take(5)
            .collect();
        let w = Weights::from_rows(1, crowded.iter().map(|&id| (id, vec![id as f32])));
        assert_eq!(w.table.slots.len(), probe.table.slots.len());
        for &id in &crowded {
            assert_eq!(w.row(id), Some(&[id as f32][..]));
        }
        // Many ids, and as many absent, looked up one by one and together.
        let ids: Vec<FeatureId> = (0..3000u64)
            .map(|i| i.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ (i << 7))
            .collect();
        let w = Weights::from_rows(2, ids.iter().map(|&id| (id, vec![id as f32, -(id as f32)])));
        for &id in &ids {
            assert_eq!(w.row(id), Some(&[id as f32, -(id as f32)][..]));
            assert_eq!(w.row(!id), None);
        }
        let asked: Vec<(FeatureId, f32)> =
            ids.iter().flat_map(|&id| [(id, 1.0), (!id, 2.0)]).collect();
        let mut found = Vec::new();
        w.rows_of(asked.iter().copied(), &mut found);
        let expected: Vec<(FeatureId, &[f32], f32)> = asked
            .iter()
            .filter_map(|&(id, v)| w.row(id).map(|row| (id, row, v)))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(found.len(), ids.len());
        // No model, no rows.
        let (empty, mut none) = (Weights::default(), Vec::new());
        empty.rows_of(asked.iter().copied(), &mut none);
        assert!(none.is_empty() && empty.row(5).is_none());
    }

    #[test]
    fn weights_are_saved_packed_read_back_exactly_and_old_row_objects_still_read() {
        let w = Weights::from_rows(
            2,
            [
                (7, vec![0.1, -2.5e-7]),
                (u64::MAX, vec![f32::MIN_POSITIVE, 3.0]),
                (3, vec![1.0 / 3.0, 0.0]),
            ],
        );
        assert_eq!(w.row(7), Some(&[0.1, -2.5e-7][..]));
        assert_eq!(w.row(8), None);
        let json = serde_json::to_string(&w).unwrap();
        assert!(json.starts_with("{\"k\":2,\"ids\":\""), "{json}");
        let back: Weights = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w, "bit for bit");
        // Format 3's object of rows.
        let old: Weights =
            serde_json::from_str(r#"{"3":[0.33333334,0.0],"7":[0.1,-2.5e-7],"18446744073709551615":[1.1754944e-38,3.0]}"#)
                .unwrap();
        assert_eq!(old, w);
        // Damage is an error, never a panic or a short model.
        for bad in [
            r#"{"k":2,"ids":"AAAAAAAAAAA=","rows":"AAAAAA=="}"#,
            r#"{"k":2,"ids":"!!","rows":""}"#,
            r#"{"k":2,"ids":"AAAAAAAAAAA="}"#,
            r#"{"k":1,"ids":"AQAAAAAAAAABAAAAAAAAAA==","rows":"AAAAAAAAAAA="}"#,
            r#"{"k":2,"ids":"","rows":"","5":[1.0,2.0]}"#,
            r#"{"5":[1.0,2.0],"6":[1.0]}"#,
            r#"{"x":[1.0]}"#,
            r#"{"5":[1.0,2.0],"5":[3.0,4.0]}"#,
        ] {
            assert!(serde_json::from_str::<Weights>(bad).is_err(), "{bad}");
        }
    }
}
