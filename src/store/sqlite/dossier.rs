//! Dossiers: identifiers found in tickets, case links, and links a clerk made by hand.

use super::*;
use crate::domain::dossier::{Links, Reason};

impl Store {
    pub(super) fn entities_of(&self, ticket_id: i64) -> Result<Vec<Entity>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, value, valid, confidence, place, raw FROM entities WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([ticket_id], |r| {
            let kind: String = r.get(0)?;
            Ok((
                kind,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, value, valid, confidence, place, raw) = row?;
            let kind = EntityKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("entity kind {kind}")))?;
            out.push(Entity {
                kind,
                value,
                valid,
                confidence: confidence as f32,
                place,
                raw,
            });
        }
        Ok(out)
    }

    /// The tickets one ticket is linked to directly, with the reasons.
    pub(super) fn direct_links(&self, ticket_id: i64) -> Result<Vec<DossierLink>> {
        Ok(self
            .links(ticket_id, true)?
            .into_iter()
            .map(|(_, link, _)| link)
            .collect())
    }

    /// Direct links as (other ticket, link, is it a person link); case links only when
    /// `with_cases`.
    pub(super) fn links(
        &self,
        ticket_id: i64,
        with_cases: bool,
    ) -> Result<Vec<(i64, DossierLink, bool)>> {
        let mut links = Links::new(with_cases);
        {
            // Strong identifiers: a valid fiscal code anywhere, the sender's own address or
            // number, a case number; the same value on another ticket links the two.
            let mut stmt = self.conn.prepare_cached(
                "SELECT o.ticket_id, e.kind, e.value FROM entities e
                 JOIN entities o ON o.kind = e.kind AND o.value = e.value AND o.ticket_id != e.ticket_id
                 WHERE e.ticket_id = ?1
                   AND ((e.kind = 'fiscal_code' AND e.valid = 1 AND o.valid = 1)
                     OR (e.kind IN ('email', 'phone') AND e.place = 'sender' AND o.place = 'sender')
                     OR e.kind = 'case_ref')",
            )?;
            let rows = stmt.query_map([ticket_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (other, kind, value) = row?;
                if let Some(reason) =
                    EntityKind::parse(&kind).and_then(|k| Reason::shared(k, &value))
                {
                    links.strong(other, reason);
                }
            }
        }
        if with_cases {
            // A mention of one of our tracking codes links to that ticket, both ways.
            let code: String = self.conn.query_row(
                "SELECT code FROM tickets WHERE id = ?1",
                [ticket_id],
                |r| r.get(0),
            )?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT t.id, 1, t.code FROM entities e JOIN tickets t ON t.code = substr(e.value, 8)
                 WHERE e.ticket_id = ?1 AND e.kind = 'case_ref' AND e.value LIKE 'ticket %' AND t.id != ?1
                 UNION ALL
                 SELECT e.ticket_id, 0, t.code FROM entities e JOIN tickets t ON t.id = e.ticket_id
                 WHERE e.kind = 'case_ref' AND e.value = 'ticket ' || ?2 AND e.ticket_id != ?1",
            )?;
            let rows = stmt.query_map(params![ticket_id, code], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (other, ours, code) = row?;
                let reason = if ours {
                    Reason::RefersTo(code)
                } else {
                    Reason::ReferredToBy(code)
                };
                links.strong(other, reason);
            }
        }
        {
            // Weak evidence, the same sender name and the same address: only a suggestion.
            let mut stmt = self.conn.prepare_cached(
                "SELECT o.ticket_id, e.value FROM entities e
                 JOIN entities o ON o.kind = 'address' AND o.value = e.value AND o.ticket_id != e.ticket_id
                 JOIN tickets t ON t.id = e.ticket_id JOIN tickets ot ON ot.id = o.ticket_id
                 WHERE e.ticket_id = ?1 AND e.kind = 'address'
                   AND t.sender_name IS NOT NULL AND lower(t.sender_name) = lower(ot.sender_name)",
            )?;
            let rows = stmt.query_map([ticket_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (other, address) = row?;
                links.weak(other, Reason::SameNameAndAddress(address));
            }
        }
        {
            // What clerks linked or unlinked by hand wins.
            let mut stmt = self.conn.prepare_cached(
                "SELECT CASE WHEN a = ?1 THEN b ELSE a END, linked FROM manual_links WHERE a = ?1 OR b = ?1",
            )?;
            let rows = stmt.query_map([ticket_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
            })?;
            for row in rows {
                let (other, linked) = row?;
                links.by_hand(other, linked);
            }
        }
        let found = links.into_evidence();
        let mut out = Vec::with_capacity(found.len());
        for (other, evidence) in found {
            let reasons = evidence.reasons.iter().map(Reason::to_string).collect();
            let Some(link) = self.link_to(other, reasons, evidence.suggested)? else {
                continue;
            };
            out.push((other, link, evidence.person));
        }
        out.sort_by(|a, b| b.1.received_at.cmp(&a.1.received_at));
        Ok(out)
    }

    /// A link to ticket `id` as shown in a dossier.
    pub(super) fn link_to(
        &self,
        id: i64,
        reasons: Vec<String>,
        suggested: bool,
    ) -> Result<Option<DossierLink>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT code, protocol_year, protocol_number, received_at, channel, subject FROM tickets WHERE id = ?1",
        )?;
        Ok(stmt
            .query_row([id], |r| {
                Ok(DossierLink {
                    code: r.get(0)?,
                    protocol: protocol_string(r.get(1)?, r.get(2)?),
                    received_at: r.get(3)?,
                    channel: r.get(4)?,
                    subject: r.get(5)?,
                    reasons,
                    suggested,
                })
            })
            .optional()?)
    }

    /// The tickets reachable from `start`: the start tickets' own links of every kind, then
    /// person links onwards (the same person's other tickets). Case links are not followed
    /// further: a technician's many cases would otherwise join unrelated citizens.
    pub(super) fn dossier_from(&self, start: Vec<i64>) -> Result<Vec<DossierLink>> {
        const MAX: usize = 500;
        let mut seen: std::collections::HashSet<String> = Default::default();
        let mut start_codes = Vec::new();
        for &id in &start {
            start_codes.push(self.conn.query_row(
                "SELECT code FROM tickets WHERE id = ?1",
                [id],
                |r| r.get::<_, String>(0),
            )?);
        }
        seen.extend(start_codes.iter().cloned());
        let starts: std::collections::HashSet<i64> = start.iter().copied().collect();
        let mut queue: std::collections::VecDeque<i64> = start.into();
        let mut out: Vec<DossierLink> = Vec::new();
        while let Some(id) = queue.pop_front() {
            // Case links only from where we started; person links onwards.
            for (other, link, _) in self.links(id, starts.contains(&id))? {
                if link.suggested || !seen.insert(link.code.clone()) {
                    continue;
                }
                out.push(link);
                if out.len() >= MAX {
                    return Ok(out);
                }
                queue.push_back(other);
            }
        }
        out.sort_by(|a, b| b.received_at.cmp(&a.received_at));
        Ok(out)
    }
}

impl Dossiers for Store {
    fn entities(&self, code_input: &str) -> Result<Vec<Entity>> {
        let (id, _) = self.ticket_id(code_input)?;
        self.entities_of(id)
    }

    fn dossier(&self, code_input: &str) -> Result<Vec<DossierLink>> {
        let (id, _) = self.ticket_id(code_input)?;
        self.dossier_from(vec![id])
    }

    fn dossier_by(&self, kind: EntityKind, value: &str) -> Result<Vec<DossierLink>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT ticket_id FROM entities WHERE kind = ?1 AND value = ?2",
        )?;
        let ids: Vec<i64> = stmt
            .query_map(params![kind.as_str(), value], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        // A case dossier is the tickets about the case; a person's reaches all their tickets.
        let mut all = if kind == EntityKind::CaseRef {
            Vec::new()
        } else {
            self.dossier_from(ids.clone())?
        };
        // The starting tickets belong to it too.
        for id in ids {
            if let Some(l) = self.link_to(
                id,
                vec![format!("carries {} {value}", kind.as_str())],
                false,
            )? {
                if !all.iter().any(|a| a.code == l.code) {
                    all.push(l);
                }
            }
        }
        all.sort_by(|a, b| b.received_at.cmp(&a.received_at));
        Ok(all)
    }

    fn set_link(&mut self, a: &str, b: &str, linked: bool, actor: &str) -> Result<()> {
        let (ia, ca) = self.ticket_id(a)?;
        let (ib, cb) = self.ticket_id(b)?;
        let (lo, hi) = if ia < ib { (ia, ib) } else { (ib, ia) };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        execute_cached(
            &tx,
            "INSERT INTO manual_links (a, b, linked) VALUES (?1, ?2, ?3) ON CONFLICT(a, b) DO UPDATE SET linked = ?3",
            params![lo, hi, linked],
        )?;
        let event = |with: String| {
            if linked {
                Happened::Linked { with }
            } else {
                Happened::Unlinked { with }
            }
        };
        let now = now_rfc3339();
        insert_event(&tx, ia, &now, actor, &event(cb))?;
        insert_event(&tx, ib, &now, actor, &event(ca))?;
        tx.commit()?;
        Ok(())
    }
}
