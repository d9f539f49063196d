//! Joins one-page searchable PDFs (one per OCR'd page, made in parallel) into the document's
//! searchable PDF, in page order. Pages of the original that needed no OCR (born-digital pages
//! of a mixed PDF) are taken from the original, so the digitised copy is complete.

use lopdf::{dictionary, Document, Object, ObjectId};
use std::collections::{BTreeMap, HashMap};

/// Attributes a page may inherit from its parents in the page tree.
const INHERITED: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

pub fn join(ocr_pages: &[(u32, Vec<u8>)], original: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut out = Document::with_version("1.5");
    let pages_id = out.new_object_id();
    let mut kids: Vec<ObjectId> = Vec::new();
    let by_number: HashMap<u32, &Vec<u8>> = ocr_pages.iter().map(|(n, b)| (*n, b)).collect();
    let original = original.and_then(|b| crate::extract::pdf::open(b).ok());
    let mut original_pages: Option<BTreeMap<u32, ObjectId>> = None;
    let page_count = original
        .as_ref()
        .map_or(0, |d| d.get_pages().len() as u32)
        .max(ocr_pages.iter().map(|(n, _)| *n).max().unwrap_or(0));
    let mut original = original;
    for number in 1..=page_count {
        if let Some(bytes) = by_number.get(&number) {
            let doc = Document::load_mem(bytes).map_err(|e| format!("page {number}: {e}"))?;
            let pages = import(&mut out, doc);
            kids.extend(pages.values().next().copied());
        } else if let Some(doc) = original.take() {
            original_pages = Some(import(&mut out, doc));
            kids.extend(
                original_pages
                    .as_ref()
                    .and_then(|p| p.get(&number))
                    .copied(),
            );
        } else if let Some(id) = original_pages.as_ref().and_then(|p| p.get(&number)) {
            kids.push(*id);
        }
    }
    if kids.is_empty() {
        return Err("no pages to write".into());
    }
    for id in &kids {
        if let Ok(page) = out.get_object_mut(*id).and_then(Object::as_dict_mut) {
            page.set("Parent", pages_id);
        }
    }
    let count = kids.len() as i64;
    out.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids.into_iter().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => count,
        }),
    );
    let catalog = out.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    out.trailer.set("Root", catalog);
    // Pages of the original that were replaced, and its old page tree, are unreachable now.
    out.prune_objects();
    let mut bytes = Vec::new();
    out.save_to(&mut bytes)
        .map_err(|e| format!("cannot write the searchable PDF: {e}"))?;
    Ok(bytes)
}

/// Moves `src`'s objects into `out` under fresh numbers, except its catalog and page tree;
/// returns its pages by number, each carrying what it inherited.
fn import(out: &mut Document, mut src: Document) -> BTreeMap<u32, ObjectId> {
    src.renumber_objects_with(out.max_id + 1);
    let pages = src.get_pages();
    for &id in pages.values() {
        let inherited: Vec<(&[u8], Object)> = INHERITED
            .iter()
            .filter(|key| src.get_dictionary(id).is_ok_and(|d| !d.has(key)))
            .filter_map(|key| inherited_value(&src, id, key).map(|v| (*key, v)))
            .collect();
        if let Ok(page) = src.get_object_mut(id).and_then(Object::as_dict_mut) {
            for (key, value) in inherited {
                page.set(key, value);
            }
        }
    }
    for (id, object) in std::mem::take(&mut src.objects) {
        let kind = object
            .as_dict()
            .ok()
            .and_then(|d| d.get(b"Type").ok())
            .and_then(|t| t.as_name().ok());
        if matches!(kind, Some(b"Catalog") | Some(b"Pages")) {
            continue;
        }
        out.objects.insert(id, object);
    }
    out.max_id = out.max_id.max(src.max_id);
    pages
}

fn inherited_value(doc: &Document, page: ObjectId, key: &[u8]) -> Option<Object> {
    let mut id = doc
        .get_dictionary(page)
        .ok()?
        .get(b"Parent")
        .ok()?
        .as_reference()
        .ok();
    for _ in 0..32 {
        let dict = doc.get_dictionary(id?).ok()?;
        if let Ok(v) = dict.get(key) {
            return Some(v.clone());
        }
        id = dict.get(b"Parent").and_then(|o| o.as_reference()).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_pages_in_order_and_fills_gaps_from_the_original() {
        let page = |t: &str| vec![t.to_string()];
        let original =
            crate::testdata::pdf(&[page("first page"), page("second page"), page("third page")]);
        let ocr2 = crate::testdata::pdf(&[page("OCR of page two")]);
        let joined = join(&[(2, ocr2)], Some(&original)).unwrap();
        let doc = Document::load_mem(&joined).unwrap();
        assert_eq!(doc.get_pages().len(), 3);
        let texts: Vec<String> = (1..=3)
            .map(|n| doc.extract_text(&[n]).unwrap_or_default())
            .collect();
        assert!(texts[0].contains("first"), "{texts:?}");
        assert!(texts[1].contains("OCR of page two"), "{texts:?}");
        assert!(texts[2].contains("third"), "{texts:?}");
    }
}
