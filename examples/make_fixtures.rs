//! Writes the project's own demo and test fixtures into `fixtures/`:
//! `cargo run --example make_fixtures`. Every person, address and number is invented.

use sportello::testdata::{email, fax_tiff, jpeg_pdf, letter_pdf, scan, Scan};
use std::fs;
use std::path::Path;

const LETTERS: &[(&str, &str, &str)] = &[
    (
        "lettera-allacciamento-gas.pdf",
        "Richiesta allacciamento gas modulo abitativo",
        "Il sottoscritto Mario Rossi, assegnatario del modulo abitativo provvisorio (MAP) n. 14 \
         in località Paganica, chiede l'allacciamento alla rete del gas metano. Il contatore \
         risulta installato ma la fornitura non è ancora attiva. Resto in attesa di un cortese riscontro.\n\
         Distinti saluti, Mario Rossi",
    ),
    (
        "lettera-contributo-autonoma-sistemazione.pdf",
        "Contributo di autonoma sistemazione",
        "La sottoscritta Anna Di Marco, residente in via Roma 12 a L'Aquila, abitazione dichiarata \
         inagibile (esito E), chiede informazioni sul pagamento del contributo di autonoma \
         sistemazione per il nucleo familiare di quattro persone, non ancora ricevuto per i mesi \
         di maggio e giugno.\nCordiali saluti, Anna Di Marco",
    ),
    (
        "lettera-macerie.pdf",
        "Rimozione macerie via Sallustio",
        "Segnalo che davanti al civico 8 di via Sallustio sono accumulate da settimane le macerie \
         della demolizione dell'edificio adiacente. Chiedo la rimozione urgente perché ostruiscono \
         il passaggio pedonale in pieno centro città.\nGiuseppe Ferri",
    ),
    (
        "lettera-ricostruzione-perizia.pdf",
        "Sopralluogo AeDES e progetto di ricostruzione",
        "In qualità di tecnico incaricato dal condominio di via Strinella 30, chiedo lo stato della \
         pratica di ricostruzione pesante e la data del nuovo sopralluogo AeDES richiesto dopo le \
         verifiche di agibilità.\nIng. Paolo Santilli",
    ),
    (
        "lettera-alloggi-case.pdf",
        "Assegnazione alloggio progetto C.A.S.E.",
        "Chiedo di conoscere la posizione in graduatoria per l'assegnazione degli alloggi del \
         progetto C.A.S.E. a Bazzano. Attualmente siamo ospitati in albergo sulla costa.\n\
         Lucia Marinelli",
    ),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create fixtures dir");
    fs::write(dir.join(name), bytes).expect("write fixture");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let letters = root.join("scanner");
    for (name, subject, body) in LETTERS {
        write(&letters, name, &letter_pdf(subject, body));
    }
    // A PDF cut off in transit: must become a flagged ticket, original kept.
    let whole = letter_pdf(
        "Domanda incompleta",
        "Questo documento è stato troncato durante l'invio.",
    );
    write(&letters, "lettera-troncata.pdf", &whole[..whole.len() / 2]);

    // Scans and faxes with something to read (rendered from letters by pdftoppm), for OCR.
    let scanned = |subject: &str, body: &str, how: Scan, quarters: u32| {
        scan(&letter_pdf(subject, body), how, quarters).expect("pdftoppm renders the letter")
    };
    let upside_down = scanned(
        "Richiesta allaccio luce modulo abitativo",
        "La sottoscritta Barbara Tatone, assegnataria del modulo abitativo provvisorio di Camarda, \
         chiede l'allaccio della fornitura di energia elettrica, non ancora attiva a un mese dalla \
         consegna delle chiavi.\nBarbara Tatone",
        Scan::Letter,
        2,
    );
    write(&letters, "scansione-capovolta.jpg", &upside_down);
    let scan_pdf = jpeg_pdf(&scanned(
        "Contributo di autonoma sistemazione non ricevuto",
        "Il sottoscritto Carlo Iannini chiede il pagamento del contributo di autonoma sistemazione \
         per i mesi di luglio e agosto, non ancora accreditato sul conto indicato nella domanda.\n\
         Carlo Iannini",
        Scan::Letter,
        0,
    ));
    write(&letters, "scansione-contributo.pdf", &scan_pdf);

    let fax = root.join("fax");
    write(
        &fax,
        "fax_+390862505245_20100412-1822.tif",
        &scanned(
            "Attivazione fornitura gas",
            "Chiedo l'attivazione della fornitura del gas metano per il modulo abitativo n. 27 \
             del villaggio MAP di Paganica: il contatore è stato installato ma il gas non arriva.\n\
             Rocco Santucci",
            Scan::FaxFine,
            0,
        ),
    );
    write(
        &fax,
        "fax_0862412345_20100413-0907.tif",
        &scanned(
            "Rimozione macerie in via Roma",
            "Segnalo che le macerie della demolizione del civico 41 di via Roma non sono ancora \
             state rimosse e bloccano l'accesso ai garage del condominio.\nMaria Gizzi",
            Scan::FaxNormal,
            0,
        ),
    );
    // A page with nothing to read: OCR finds no text and says so.
    write(
        &fax,
        "fax_0862999000_20100415-1000.tif",
        &fax_tiff(1728, 400, 1),
    );
    write(
        &fax,
        "fax_0862300111_20100414-1130.pdf",
        &letter_pdf("Richiesta voltura contatore acqua", "Chiedo la voltura del contatore dell'acqua (Gran Sasso Acqua) per l'immobile di via Fontesecco 3, danneggiato dal sisma.\nLaura Cipriani"),
    );

    let mail = root.join("mail");
    write(
        &mail,
        "richiesta-tari.eml",
        &email(
            "Franco Ludovici <franco.ludovici@example.it>",
            "Sospensione tributi e TARSU",
            "Buongiorno,\nvorrei sapere se la sospensione dei tributi comunali (TARSU e ICI) vale anche per chi \
             ha la casa classificata B e rientrata agibile.\nGrazie, Franco Ludovici",
            "20100601093000.1234@example.it",
        ),
    );
    write(
        &mail,
        "orari-ufficio.eml",
        &email(
            "Elena Paoletti <elena.paoletti@example.org>",
            "Orari di apertura ufficio ricostruzione",
            "Salve, quali sono gli orari di apertura al pubblico dell'ufficio ricostruzione e dove si trova \
             la sede provvisoria?\nElena Paoletti",
            "20100602101500.777@example.org",
        ),
    );
    println!("fixtures written to {}", root.display());
}
