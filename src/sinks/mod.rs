//! Where tickets go besides the store. A small closed set: acknowledgements by SMTP.

pub mod smtp;
