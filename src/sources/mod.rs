//! Where items come from. A small closed set: drop folders (fax servers, scanners), IMAP
//! mailboxes (email, PEC), and gammu-smsd's inbox (text messages).

pub mod folder;
pub mod imap;
pub mod sms;
