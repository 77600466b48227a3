//! The facts of one message as rules see them: each [`Field`]'s values, taken from the parsed
//! message and the envelope.

use std::borrow::Cow;
use std::cell::OnceCell;

use mail_parser::{Message, MimeHeaders};

use super::{Field, FieldSource};
use crate::message::{BODY_TEXT_LIMIT, body_text, from_text, header_values, part_type};

/// What rules see of one message.
pub struct Facts<'m, 'x> {
    pub mail: &'m Message<'x>,
    pub envelope_sender: Option<&'m str>,
    body: OnceCell<String>,
}

impl<'m, 'x> Facts<'m, 'x> {
    pub fn new(mail: &'m Message<'x>, envelope_sender: Option<&'m str>) -> Facts<'m, 'x> {
        Facts {
            mail,
            envelope_sender,
            body: OnceCell::new(),
        }
    }

    pub fn body(&self) -> &str {
        self.body
            .get_or_init(|| body_text(self.mail, BODY_TEXT_LIMIT))
    }

    /// `report-type` of a top-level multipart/report.
    pub fn report_type(&self) -> Option<String> {
        let ct = self.mail.root_part().content_type()?;
        if !ct.ctype().eq_ignore_ascii_case("multipart")
            || !ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        {
            return None;
        }
        ct.attribute("report-type")
            .map(|r| r.trim().to_ascii_lowercase())
    }
}

impl FieldSource for Facts<'_, '_> {
    fn values(&self, field: &Field) -> Option<Vec<Cow<'_, str>>> {
        let list = match field {
            Field::EnvelopeSender => vec![Cow::Borrowed(self.envelope_sender?)],
            Field::Subject => vec![Cow::Borrowed(self.mail.subject()?)],
            Field::From => vec![Cow::Owned(from_text(self.mail)?)],
            Field::Header(name) => header_values(self.mail, name),
            Field::ContentType => vec![Cow::Owned(part_type(self.mail.root_part()))],
            Field::ReportType => vec![Cow::Owned(self.report_type()?)],
            Field::PartType => self
                .mail
                .parts
                .iter()
                .map(|p| Cow::Owned(part_type(p)))
                .collect(),
            Field::Body => vec![Cow::Borrowed(self.body())],
        };
        (!list.is_empty()).then_some(list)
    }
}
