//! Where items come from. A small closed set: drop folders (fax servers, scanners), IMAP
//! mailboxes (email, PEC), gammu-smsd's inbox (text messages), and Asterisk's voicemail.

pub mod folder;
pub mod imap;
pub mod sms;
pub mod voicemail;
