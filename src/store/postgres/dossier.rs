//! Dossiers: identifiers found in tickets, case links, and links a clerk made by hand.

use super::filing::protocol_string;
use super::*;
use crate::domain::dossier::{Links, Reason};
use crate::entities::Kind as EntityKind;
use crate::model::DossierLink;

pub(super) fn entities_of(c: &mut dyn Sql, ticket_id: i64) -> Result<Vec<Entity>> {
    let rows = c.query(
        "SELECT kind, value, valid, confidence, place, raw FROM entities WHERE ticket_id = $1 ORDER BY id",
        &[&ticket_id],
    )?;
    rows.iter()
        .map(|r| {
            let kind: String = col(r, 0)?;
            Ok(Entity {
                kind: EntityKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("entity kind {kind}")))?,
                value: col(r, 1)?,
                valid: col(r, 2)?,
                confidence: col::<f64>(r, 3)? as f32,
                place: col(r, 4)?,
                raw: col(r, 5)?,
            })
        })
        .collect()
}

/// The tickets one ticket is linked to directly, with the reasons.
pub(super) fn direct_links(c: &mut dyn Sql, ticket_id: i64) -> Result<Vec<DossierLink>> {
    Ok(links(c, ticket_id, true)?
        .into_iter()
        .map(|(_, link, _)| link)
        .collect())
}

/// Direct links as (other ticket, link, is it a person link); case links only when
/// `with_cases`.
fn links(
    c: &mut dyn Sql,
    ticket_id: i64,
    with_cases: bool,
) -> Result<Vec<(i64, DossierLink, bool)>> {
    let mut links = Links::new(with_cases);
    // Strong identifiers: a valid fiscal code anywhere, the sender's own address or number, a
    // case number; the same value on another ticket links the two.
    for r in c.query(
        "SELECT o.ticket_id, e.kind, e.value FROM entities e
         JOIN entities o ON o.kind = e.kind AND o.value = e.value AND o.ticket_id != e.ticket_id
         WHERE e.ticket_id = $1
           AND ((e.kind = 'fiscal_code' AND e.valid AND o.valid)
             OR (e.kind IN ('email', 'phone') AND e.place = 'sender' AND o.place = 'sender')
             OR e.kind = 'case_ref')",
        &[&ticket_id],
    )? {
        let (other, kind, value): (i64, String, String) = (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
        if let Some(reason) = EntityKind::parse(&kind).and_then(|k| Reason::shared(k, &value)) {
            links.strong(other, reason);
        }
    }
    if with_cases {
        // A mention of one of our tracking codes links to that ticket, both ways.
        let code: String = col(
            &c.query_one("SELECT code FROM tickets WHERE id = $1", &[&ticket_id])?,
            0,
        )?;
        for r in c.query(
            "SELECT t.id, TRUE, t.code FROM entities e JOIN tickets t ON t.code = substr(e.value, 8)
             WHERE e.ticket_id = $1 AND e.kind = 'case_ref' AND e.value LIKE 'ticket %' AND t.id != $1
             UNION ALL
             SELECT e.ticket_id, FALSE, t.code FROM entities e JOIN tickets t ON t.id = e.ticket_id
             WHERE e.kind = 'case_ref' AND e.value = 'ticket ' || $2 AND e.ticket_id != $1",
            &[&ticket_id, &code],
        )? {
            let (other, ours, code): (i64, bool, String) = (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
            let reason = if ours {
                Reason::RefersTo(code)
            } else {
                Reason::ReferredToBy(code)
            };
            links.strong(other, reason);
        }
    }
    // Weak evidence, the same sender name and the same address: only a suggestion.
    for r in c.query(
        "SELECT o.ticket_id, e.value FROM entities e
         JOIN entities o ON o.kind = 'address' AND o.value = e.value AND o.ticket_id != e.ticket_id
         JOIN tickets t ON t.id = e.ticket_id JOIN tickets ot ON ot.id = o.ticket_id
         WHERE e.ticket_id = $1 AND e.kind = 'address'
           AND t.sender_name IS NOT NULL AND lower(t.sender_name) = lower(ot.sender_name)",
        &[&ticket_id],
    )? {
        links.weak(col(&r, 0)?, Reason::SameNameAndAddress(col(&r, 1)?));
    }
    // What clerks linked or unlinked by hand wins.
    for r in c.query(
        "SELECT CASE WHEN a = $1 THEN b ELSE a END, linked FROM manual_links WHERE a = $1 OR b = $1",
        &[&ticket_id],
    )? {
        links.by_hand(col(&r, 0)?, col(&r, 1)?);
    }
    let found = links.into_evidence();
    let mut out = Vec::with_capacity(found.len());
    for (other, evidence) in found {
        let reasons = evidence.reasons.iter().map(Reason::to_string).collect();
        let Some(link) = link_to(c, other, reasons, evidence.suggested)? else {
            continue;
        };
        out.push((other, link, evidence.person));
    }
    out.sort_by(|a, b| b.1.received_at.cmp(&a.1.received_at));
    Ok(out)
}

/// A link to ticket `id` as shown in a dossier.
fn link_to(
    c: &mut dyn Sql,
    id: i64,
    reasons: Vec<String>,
    suggested: bool,
) -> Result<Option<DossierLink>> {
    let Some(r) = c.query_opt(
        "SELECT code, protocol_year, protocol_number, received_at, channel, subject FROM tickets WHERE id = $1",
        &[&id],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(DossierLink {
        code: col(&r, 0)?,
        protocol: protocol_string(col(&r, 1)?, col(&r, 2)?),
        received_at: col(&r, 3)?,
        channel: col(&r, 4)?,
        subject: col(&r, 5)?,
        reasons,
        suggested,
    }))
}

/// The tickets reachable from `start`: the start tickets' own links of every kind, then person
/// links onwards. Case links are not followed further: a technician's many cases would
/// otherwise join unrelated citizens.
fn dossier_from(c: &mut dyn Sql, start: Vec<i64>) -> Result<Vec<DossierLink>> {
    const MAX: usize = 500;
    let mut seen: std::collections::HashSet<String> = Default::default();
    for &id in &start {
        seen.insert(col(
            &c.query_one("SELECT code FROM tickets WHERE id = $1", &[&id])?,
            0,
        )?);
    }
    let starts: std::collections::HashSet<i64> = start.iter().copied().collect();
    let mut queue: std::collections::VecDeque<i64> = start.into();
    let mut out: Vec<DossierLink> = Vec::new();
    while let Some(id) = queue.pop_front() {
        for (other, link, _) in links(c, id, starts.contains(&id))? {
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

impl Dossiers for PgStore {
    fn entities(&self, code_input: &str) -> Result<Vec<Entity>> {
        let mut c = self.read()?;
        let (id, _) = ticket_id(&mut *c, code_input)?;
        entities_of(&mut *c, id)
    }

    fn dossier(&self, code_input: &str) -> Result<Vec<DossierLink>> {
        let mut c = self.read()?;
        let (id, _) = ticket_id(&mut *c, code_input)?;
        dossier_from(&mut *c, vec![id])
    }

    fn dossier_by(&self, kind: EntityKind, value: &str) -> Result<Vec<DossierLink>> {
        let mut c = self.read()?;
        let ids: Vec<i64> = c
            .query(
                "SELECT DISTINCT ticket_id FROM entities WHERE kind = $1 AND value = $2",
                &[&kind.as_str(), &value],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect::<Result<_>>()?;
        // A case dossier is the tickets about the case; a person's reaches all their tickets.
        let mut all = if kind == EntityKind::CaseRef {
            Vec::new()
        } else {
            dossier_from(&mut *c, ids.clone())?
        };
        for id in ids {
            let reasons = vec![format!("carries {} {value}", kind.as_str())];
            if let Some(l) = link_to(&mut *c, id, reasons, false)? {
                if !all.iter().any(|a| a.code == l.code) {
                    all.push(l);
                }
            }
        }
        all.sort_by(|a, b| b.received_at.cmp(&a.received_at));
        Ok(all)
    }

    fn set_link(&mut self, a: &str, b: &str, linked: bool, actor: &str) -> Result<()> {
        self.write(|tx| {
            let (ia, ca) = ticket_id(tx, a)?;
            let (ib, cb) = ticket_id(tx, b)?;
            let (lo, hi) = if ia < ib { (ia, ib) } else { (ib, ia) };
            tx.execute(
                "INSERT INTO manual_links (a, b, linked) VALUES ($1, $2, $3)
                 ON CONFLICT(a, b) DO UPDATE SET linked = $3",
                &[&lo, &hi, &linked],
            )?;
            let event = |with: String| {
                if linked {
                    Happened::Linked { with }
                } else {
                    Happened::Unlinked { with }
                }
            };
            let now = now_rfc3339();
            insert_event(tx, ia, &now, actor, &event(cb))?;
            insert_event(tx, ib, &now, actor, &event(ca))
        })
    }
}
