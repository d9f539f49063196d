//! The model's text weights: feature id → one weight per topic, every row side by side in one
//! list. Saved packed (the ids and the weights as little-endian bytes, base64): a model's
//! hundred thousand weights written as JSON numbers took 57 million instructions to parse,
//! the largest part of a command's start; packed, the whole model loads in 13 million, and
//! every weight comes back bit for bit. Models saved before (format 3: a JSON object of
//! rows) are still read.

use super::features::{FeatureId, IdMap};
use base64::Engine as _;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Rows of `k` weights by feature id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    k: usize,
    /// Feature id → its row's index in `values`.
    rows: IdMap<u32>,
    /// Each row's feature id, in row order (what is saved).
    ids: Vec<FeatureId>,
    values: Vec<f32>,
}

impl Weights {
    /// Rows of `k` weights each, from `(id, row)` pairs; saved in ascending id order, so the
    /// same model is the same file.
    pub fn from_rows(k: usize, rows: impl IntoIterator<Item = (FeatureId, Vec<f32>)>) -> Weights {
        let mut rows: Vec<(FeatureId, Vec<f32>)> = rows.into_iter().collect();
        // Stable: of two rows for one id (which training never gives), the first is kept.
        rows.sort_by_key(|(id, _)| *id);
        rows.dedup_by_key(|(id, _)| *id);
        let mut w = Weights {
            k,
            ..Weights::default()
        };
        for (id, row) in rows {
            assert_eq!(row.len(), k, "a weight row has one weight per topic");
            w.push(id, &row);
        }
        w
    }

    fn push(&mut self, id: FeatureId, row: &[f32]) {
        self.rows.insert(id, self.ids.len() as u32);
        self.ids.push(id);
        self.values.extend_from_slice(row);
    }

    /// The feature's weights, one per topic, if the model has them.
    pub fn row(&self, id: FeatureId) -> Option<&[f32]> {
        let i = *self.rows.get(&id)? as usize;
        Some(&self.values[i * self.k..(i + 1) * self.k])
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
        let mut rows = IdMap::with_capacity_and_hasher(ids.len(), Default::default());
        for (i, &id) in ids.iter().enumerate() {
            if rows.insert(id, i as u32).is_some() {
                return Err(de::Error::custom(format!("feature {id} has two rows")));
            }
        }
        Ok(Weights {
            k,
            rows,
            ids,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
