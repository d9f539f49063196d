//! Where items come from. A small closed set: drop folders now, IMAP mailboxes with the
//! email channel.

pub mod folder;
pub mod imap;
