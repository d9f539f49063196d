//! The interface in Italian (default) and English: one table, looked up by key. A key with
//! no entry shows as itself (a status or event kind we have no words for yet stays readable).

use axum::http::HeaderMap;

pub const LANG_COOKIE: &str = "sportello_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    It,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::It => "it",
            Lang::En => "en",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::It => "Italiano",
            Lang::En => "English",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::It => Lang::En,
            Lang::En => Lang::It,
        }
    }

    pub fn parse(s: &str) -> Lang {
        if s.eq_ignore_ascii_case("en") {
            Lang::En
        } else {
            Lang::It
        }
    }

    /// The language cookie when set, else Italian: the office's language, whatever the
    /// browser says.
    pub fn of(headers: &HeaderMap) -> Lang {
        super::cookie(headers, LANG_COOKIE)
            .map(|v| Lang::parse(&v))
            .unwrap_or(Lang::It)
    }
}

/// (key, Italian, English)
const TEXTS: &[(&str, &str, &str)] = &[
    ("skip", "Vai al contenuto", "Skip to content"),
    ("nav", "Navigazione", "Navigation"),
    ("queue", "Code di lavoro", "Work queues"),
    ("register", "Registra richiesta", "Register a request"),
    ("search", "Ricerca", "Search"),
    ("rules", "Regole di classificazione", "Classification rules"),
    ("stats", "Statistiche", "Statistics"),
    ("logout", "Esci", "Log out"),
    ("clerk", "operatore", "clerk"),
    ("archivist", "archivista", "archivist"),
    ("admin", "amministratore", "admin"),
    ("login_title", "Accesso operatori", "Staff login"),
    ("username", "Utente", "User name"),
    ("password", "Password", "Password"),
    ("login", "Accedi", "Log in"),
    ("login_wait", "Troppi tentativi non riusciti. Riprovi tra {n} secondi.", "Too many failed attempts. Try again in {n} seconds."),
    ("users", "Utenti", "Users"),
    ("role", "Ruolo", "Role"),
    ("locked_accounts", "Accessi bloccati dopo password errate", "Logins held back after wrong passwords"),
    ("no_locked", "Nessun accesso bloccato.", "No login is held back."),
    ("failures", "Password errate", "Wrong passwords"),
    ("last_failure", "Ultima", "Last"),
    ("wait_left", "Attesa residua (s)", "Wait left (s)"),
    ("locked", "bloccato", "locked"),
    ("unlock", "Sblocca", "Unlock"),
    ("unlocked", "Sbloccato.", "Unlocked."),
    ("login_failed", "Utente o password non corretti.", "Wrong user name or password."),
    ("login_stale", "Il modulo è scaduto: riprovare.", "The form expired: please try again."),
    ("track_link", "Cittadini: a che punto è la mia richiesta?", "Citizens: where is my request?"),
    ("track_title", "Stato della richiesta", "Request status"),
    ("track_intro", "Inserire il codice di tracciamento ricevuto con la conferma (es. URP-7K3M-9QXD).", "Type the tracking code from your acknowledgement (e.g. URP-7K3M-9QXD)."),
    ("track_code", "Codice di tracciamento", "Tracking code"),
    ("track_button", "Verifica", "Check"),
    ("track_mistyped", "Il codice contiene un errore di battitura (il carattere di controllo non corrisponde): ricontrollarlo.", "The code is mistyped (its check character does not match): please check it."),
    ("track_malformed", "Questo non è un codice di tracciamento: ha la forma URP-7K3M-9QXD.", "This is not a tracking code: it looks like URP-7K3M-9QXD."),
    ("track_unknown", "Nessuna richiesta con questo codice.", "No request has this code."),
    ("status", "Stato", "Status"),
    ("received", "Ricevuta", "Received"),
    ("updated", "Ultimo aggiornamento", "Last update"),
    ("office", "Ufficio", "Office"),
    ("new", "nuova", "new"),
    ("in_progress", "in lavorazione", "in progress"),
    ("waiting", "in attesa", "waiting"),
    ("closed", "chiusa", "closed"),
    ("email", "email", "email"),
    ("pec", "PEC", "PEC"),
    ("fax", "fax", "fax"),
    ("scanner", "scansione", "scan"),
    ("letter", "lettera", "letter"),
    ("webform", "modulo web", "web form"),
    ("phone", "telefono", "phone"),
    ("sms", "SMS", "SMS"),
    ("desk", "sportello", "desk"),
    ("phone_channel", "telefono", "phone"),
    ("counts", "Conteggi", "Counts"),
    ("to_do", "Da fare", "To do"),
    ("needs_attention", "Da verificare", "Needs attention"),
    ("unsorted", "Da smistare", "Unsorted"),
    ("best_guesses", "Ipotesi", "Best guesses"),
    ("confirm_topic", "Conferma argomento", "Confirm topic"),
    ("settle_as", "Assegna questo argomento (il modello impara)", "Set this topic (the model learns)"),
    ("by_status", "Per stato", "By status"),
    ("by_topic", "Per argomento", "By topic"),
    ("by_office", "Per ufficio", "By office"),
    ("by_channel", "Per canale", "By channel"),
    ("by_week", "Per settimana", "By week"),
    ("tickets_found", "richieste", "requests"),
    ("all_open", "tutte", "all"),
    ("pages", "Pagine", "Pages"),
    ("previous", "precedenti", "previous"),
    ("next", "successive", "next"),
    ("code", "Codice", "Code"),
    ("channel", "Canale", "Channel"),
    ("sender", "Mittente", "Sender"),
    ("subject", "Oggetto", "Subject"),
    ("topic", "Argomento", "Topic"),
    ("facts", "Dati della richiesta", "Request details"),
    ("dossier", "Fascicolo", "Dossier"),
    ("body", "Testo", "Text"),
    ("documents", "Documenti", "Documents"),
    ("actions", "Azioni", "Actions"),
    ("history", "Cronologia", "History"),
    ("protocol", "Protocollo", "Protocol"),
    ("reviewed", "verificato", "reviewed"),
    ("also", "anche", "also"),
    ("reason", "Motivo", "Reason"),
    ("duplicate_of", "Duplicato di", "Duplicate of"),
    ("preview_of", "Anteprima di", "Preview of"),
    ("page", "Pagina", "Page"),
    ("pages_n", "pagine", "pages"),
    ("of_doc", "di", "of"),
    ("searchable_pdf", "PDF ricercabile", "searchable PDF"),
    ("signed_by", "Firmato da", "Signed by"),
    ("view", "Visualizza", "View"),
    ("download", "Scarica", "Download"),
    ("open_original", "Apri l'originale", "Open the original"),
    ("segnatura", "Segnatura (XML)", "Segnatura (XML)"),
    ("reclassify", "Argomento", "Topic"),
    ("save_topic", "Riclassifica", "Reclassify"),
    ("route", "Inoltra all'ufficio", "Route to office"),
    ("route_button", "Inoltra", "Route"),
    ("change_status", "Stato", "Status"),
    ("save_status", "Cambia stato", "Change status"),
    ("mark_duplicate", "Segna come duplicato", "Mark as duplicate"),
    ("add_note", "Nota interna", "Internal note"),
    ("save_note", "Aggiungi nota", "Add note"),
    ("reply_to", "Rispondi a", "Reply to"),
    ("reply_by_sms", "Rispondi via SMS a", "Reply by SMS to"),
    ("text", "Testo", "Text"),
    ("send_reply", "Invia risposta", "Send reply"),
    ("done", "Fatto.", "Done."),
    ("done_reply", "Risposta in coda di invio.", "Reply queued for sending."),
    ("text_of_page", "Testo della pagina", "Text of page"),
    ("no_text", "Nessun testo letto in questa pagina.", "No text was read on this page."),
    ("name", "Nome e cognome", "Name"),
    ("request_text", "Testo della richiesta", "Request text"),
    ("register_button", "Registra", "Register"),
    ("register_missing", "Oggetto e testo sono obbligatori.", "Subject and text are required."),
    ("any", "tutti", "any"),
    ("search_words", "Parole da cercare", "Words to find"),
    ("search_button", "Cerca", "Search"),
    ("search_help", "Accenti e desinenze non contano (allaccio trova allacciamento). \"frase esatta\", -escludi, prefisso*.", "Accents and word endings do not matter (allaccio finds allacciamento). \"exact phrase\", -exclude, prefix*."),
    ("from_date", "Dal", "From"),
    ("to_date", "Al", "To"),
    ("no_results", "Nessun risultato", "No results"),
    ("results", "Risultati", "Results"),
    ("follow_ups", "Seguiti", "Follow-ups"),
    ("linked_tickets", "Richieste collegate", "Linked requests"),
    ("why", "Perché", "Why"),
    ("suggested", "suggerito", "suggested"),
    ("none", "Nessuno.", "None."),
    ("rules_saved", "Regole salvate: sono in vigore dalla prossima richiesta.", "Rules saved: in force from the next request."),
    ("rules_text", "File delle regole (TOML)", "Rules file (TOML)"),
    ("rules_test", "Prova sulle richieste etichettate", "Test on labelled requests"),
    ("rules_save", "Salva", "Save"),
    ("rules_problems", "Problemi nel file", "Problems in the file"),
    ("rules_not_saved", "Il file non è stato salvato.", "The file was not saved."),
    ("line", "riga", "line"),
    ("rules_backtest", "Prova", "Backtest"),
    ("rules_no_labels", "Nessuna richiesta etichettata: riclassificare qualche richiesta o avviare serve con --labels.", "No labelled requests: reclassify some tickets or start serve with --labels."),
    ("rules_in_force", "In vigore", "In force"),
    ("rules_edited", "Modificate", "Edited"),
    ("labelled_records", "Richieste etichettate", "Labelled requests"),
    ("accuracy", "Accuratezza", "Accuracy"),
    ("accuracy_answered", "Accuratezza sulle risposte", "Accuracy answered"),
    ("abstained", "Da smistare", "Abstained"),
    ("records_change", "richieste etichettate cambiano argomento", "labelled requests change topic"),
    ("labelled_as", "Etichetta", "Labelled"),
    ("before", "Prima", "Before"),
    ("after", "Dopo", "After"),
    ("fixed", "corretta", "fixed"),
    ("broken", "PEGGIORATA", "BROKEN"),
    ("still_wrong", "ancora errata", "still wrong"),
    ("recent_moves", "Richieste recenti che cambierebbero argomento", "Recent requests that would change topic"),
    ("no_moves", "Nessuna.", "None."),
    ("how_many", "Quante", "How many"),
    ("days", "giorni", "days"),
    ("show", "Mostra", "Show"),
    ("download_csv", "Scarica CSV", "Download CSV"),
    ("requests", "Richieste", "Requests"),
    ("closed_n", "Chiuse", "Closed"),
    ("closed_front", "Chiuse senza inoltro al back office", "Closed without routing to a back office"),
    ("median_close", "Tempo di chiusura (mediana)", "Time to close (median)"),
    ("p90_close", "Tempo di chiusura (90%)", "Time to close (90th percentile)"),
    // The citizens' form.
    ("request_title", "Invia una richiesta", "Send a request"),
    ("request_intro", "Compila il modulo: prima dell'invio vedrai un riepilogo da confermare. Riceverai un codice per seguire la richiesta.", "Fill in the form: before sending you will see a summary to confirm. You will get a code to follow your request."),
    ("request_fix", "Correggi questi campi", "Please correct these fields"),
    ("request_who", "I tuoi dati", "About you"),
    ("request_what", "La tua richiesta", "Your request"),
    ("required", "obbligatorio", "required"),
    ("f_name", "Nome", "First name"),
    ("f_surname", "Cognome", "Surname"),
    ("f_email", "Indirizzo email", "Email address"),
    ("f_phone", "Numero di cellulare", "Mobile number"),
    ("f_topic", "Argomento", "Topic"),
    ("f_subject", "Oggetto", "Subject"),
    ("f_text", "Testo della richiesta", "Your request"),
    ("f_files", "Allegati", "Attachments"),
    ("f_privacy_accepted", "Informativa privacy", "Privacy notice"),
    ("request_contact_hint", "Indica almeno un indirizzo email o un numero di cellulare: ti invieremo lì la ricevuta e le risposte.", "Give at least an email address or a mobile number: we will send the receipt and answers there."),
    ("dont_know", "Non so", "I don't know"),
    ("request_text_hint", "Al massimo {n} caratteri.", "At most {n} characters."),
    ("request_files_hint", "Facoltativi: fino a {n} file PDF, JPEG, PNG o TIFF, di {mb} MB al massimo ciascuno.", "Optional: up to {n} PDF, JPEG, PNG or TIFF files, at most {mb} MB each."),
    ("privacy_accept", "Ho letto l'informativa sul trattamento dei dati personali e la accetto", "I have read and accept the notice on the processing of personal data"),
    ("privacy_notice", "Informativa privacy", "Privacy notice"),
    ("privacy_given", "Letta e accettata", "Read and accepted"),
    ("request_continue", "Continua", "Continue"),
    ("request_stale", "Il modulo era scaduto: compilalo di nuovo, per favore.", "The form had expired: please fill it in again."),
    ("request_reattach", "Gli allegati non sono stati conservati: allegali di nuovo.", "The attachments were not kept: please attach them again."),
    ("request_summary", "Riepilogo della richiesta", "Summary of your request"),
    ("request_summary_intro", "Controlla i dati. La richiesta è inviata solo quando confermi.", "Check what you entered. The request is sent only when you confirm."),
    ("request_confirm", "Conferma e invia", "Confirm and send"),
    ("request_edit", "Modifica", "Edit"),
    ("receipt_title", "Richiesta ricevuta", "Request received"),
    ("receipt_intro", "La tua richiesta è stata registrata e presa in carico.", "Your request has been registered and taken in charge."),
    ("taken_in_charge", "Presa in carico", "Taken in charge"),
    ("deadline", "Termine per la risposta", "Answer due by"),
    ("deadline_law", "(30 giorni, legge 241/1990)", "(30 days, Law 241/1990)"),
    ("receipt_sent", "Ti abbiamo inviato questa ricevuta anche per email o SMS.", "We have also sent you this receipt by email or SMS."),
    ("accessibility", "Dichiarazione di accessibilità", "Accessibility statement"),
    ("footer_nav", "Informazioni legali", "Legal information"),
    ("annulled_banner", "Registrazione annullata", "Registration annulled"),
    ("annul_title", "Annulla la registrazione", "Annul the registration"),
    ("annul_hint", "La registrazione resta visibile con il suo numero, segnata come annullata. Per correggere oggetto o mittente, annullala e registra di nuovo la richiesta.", "The registration stays visible with its number, marked annulled. To correct a subject or sender, annul it and register the request again."),
    ("annul_reason", "Motivo", "Reason"),
    ("annul_act", "Atto che autorizza l'annullamento", "Act authorising the annulment"),
    ("annul_confirm", "Confermo l'annullamento: non si potrà revocare", "I confirm the annulment: it cannot be undone"),
    ("annul_button", "Annulla la registrazione", "Annul the registration"),
    // The checks' words, as the citizens' form shows them.
    ("error", "Errore", "Error"),
    ("missing", "campo obbligatorio", "required"),
    ("not an email address", "non è un indirizzo email valido", "not an email address"),
    ("not a phone number", "non è un numero di telefono valido", "not a phone number"),
    ("an email address or a mobile number is needed to answer", "serve un indirizzo email o un numero di cellulare per risponderti", "an email address or a mobile number is needed to answer"),
    ("the privacy notice must be read and accepted", "occorre leggere e accettare l'informativa", "the privacy notice must be read and accepted"),
    ("one line, without control characters", "una sola riga", "one line"),
    ("at most 200 characters", "al massimo 200 caratteri", "at most 200 characters"),
    ("at most 5000 characters", "al massimo 5000 caratteri", "at most 5000 characters"),
    ("at most 5 attachments", "al massimo 5 allegati", "at most 5 attachments"),
    ("more than 10 MB", "più di 10 MB", "more than 10 MB"),
    ("not a PDF, JPEG, PNG or TIFF file", "non è un file PDF, JPEG, PNG o TIFF", "not a PDF, JPEG, PNG or TIFF file"),
    // History entries.
    ("created", "registrata", "registered"),
    ("classified", "classificata", "classified"),
    ("reclassified", "riclassificata", "reclassified"),
    ("topic_confirmed", "argomento confermato", "topic confirmed"),
    ("status_changed", "stato cambiato", "status changed"),
    ("note", "nota", "note"),
    ("summarized", "riassunto scritto", "summary written"),
    ("annulled", "registrazione annullata", "registration annulled"),
    ("notice_queued", "avviso al cittadino in coda", "notice to the citizen queued"),
    ("summary", "Riassunto", "Summary"),
    ("write_summary", "Riassunto del messaggio vocale", "Summary of the voice message"),
    ("save_summary", "Salva il riassunto", "Save the summary"),
    ("listen", "Ascolta", "Listen"),
    ("routed", "inoltrata", "routed"),
    ("marked_duplicate", "segnata come duplicato", "marked as duplicate"),
    ("duplicate_merged", "duplicato unito", "duplicate merged"),
    ("duplicate_received", "ricevuta di nuovo", "received again"),
    ("message_received", "nuovo messaggio", "new message"),
    ("reply_queued", "risposta in coda", "reply queued"),
    ("reply_sent", "risposta inviata", "reply sent"),
    ("reply_failed", "risposta non inviata", "reply failed"),
    ("ack_queued", "conferma in coda", "acknowledgement queued"),
    ("ack_sent", "conferma inviata", "acknowledgement sent"),
    ("ack_failed", "conferma non inviata", "acknowledgement failed"),
    ("ack_not_sent", "conferma non dovuta", "no acknowledgement"),
    (
        "ack_uncertain",
        "conferma forse inviata (invio interrotto)",
        "acknowledgement perhaps sent (sending interrupted)",
    ),
    ("pec_certified", "PEC certificata", "PEC certified"),
    ("pec_receipt", "ricevuta PEC", "PEC receipt"),
    ("linked", "collegata", "linked"),
    ("unlinked", "scollegata", "unlinked"),
];

pub fn t(lang: Lang, key: &str) -> &str {
    match TEXTS.iter().find(|(k, _, _)| *k == key) {
        Some((_, it, en)) => match lang {
            Lang::It => it,
            Lang::En => en,
        },
        None => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_kind_has_a_label() {
        for k in crate::domain::EventKind::ALL {
            assert!(
                TEXTS.iter().any(|(key, _, _)| *key == k.as_str()),
                "no label for the event `{k}`"
            );
        }
    }

    #[test]
    fn keys_are_unique_and_both_languages_filled() {
        let mut keys: Vec<&str> = TEXTS.iter().map(|(k, _, _)| *k).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key appears twice");
        assert!(TEXTS
            .iter()
            .all(|(_, it, en)| !it.is_empty() && !en.is_empty()));
        assert_eq!(t(Lang::En, "queue"), "Work queues");
        assert_eq!(t(Lang::It, "some_new_kind"), "some_new_kind");
    }
}
