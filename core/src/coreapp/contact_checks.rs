//! Contact checks on the shard's session: the webapps queue inputs on a
//! shard (`contact_checks`), its primary asks the upstream with one
//! `check_contacts` frame per round for what is queued and not asked yet,
//! and records each answer in the shared cache, which takes the inputs off
//! the queue. An unanswered question is asked again after
//! [`ANSWER_TIMEOUT`], or in the next session.

use crate::store::contacts::{ContactRow, ContactStatus};
use crate::upstream::protocol::{ClientFrame, ContactCheck};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// Inputs taken from the queue per round.
pub const CHECKS_PER_ROUND: u32 = 100;
/// How long a question waits for its answer before it is asked again.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The questions one session has asked and not seen answered.
#[derive(Debug, Default)]
pub struct ContactQuestions {
    asked: HashMap<String, (Instant, Vec<String>)>,
}

impl ContactQuestions {
    /// The frame that asks for the `queued` inputs no question in flight
    /// covers, `None` when there are none.
    pub fn ask(&mut self, queued: Vec<String>) -> Option<ClientFrame> {
        self.asked.retain(|_, (at, _)| at.elapsed() < ANSWER_TIMEOUT);
        let in_flight: HashSet<&String> = self.asked.values().flat_map(|(_, inputs)| inputs).collect();
        let inputs: Vec<String> = queued.into_iter().filter(|i| !in_flight.contains(i)).collect();
        if inputs.is_empty() {
            return None;
        }
        let id = format!("cc-{}", uuid::Uuid::new_v4().simple());
        self.asked.insert(id.clone(), (Instant::now(), inputs.clone()));
        Some(ClientFrame::CheckContacts { id, inputs })
    }

    /// The results an answer carries; an answer to a question that timed
    /// out still counts. Results of an unknown status are left out (their
    /// inputs stay queued).
    pub fn answered(&mut self, id: &str, contacts: Vec<ContactCheck>) -> Vec<ContactRow> {
        self.asked.remove(id);
        contacts
            .into_iter()
            .filter_map(|c| {
                let status = match c.status.as_str() {
                    "valid" => ContactStatus::Valid,
                    "invalid" => ContactStatus::Invalid,
                    other => {
                        tracing::warn!("contact check {id}: unknown status {other:?} for {:?}", c.input);
                        return None;
                    }
                };
                // Stamped with the database clock when recorded.
                Some(ContactRow { input: c.input, status, wa_id: c.wa_id, checked_at: 0 })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(frame: Option<ClientFrame>) -> Option<(String, Vec<String>)> {
        match frame? {
            ClientFrame::CheckContacts { id, inputs } => Some((id, inputs)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_input_is_asked_once_while_its_question_is_open() {
        let mut questions = ContactQuestions::default();
        let (id, first) = inputs(questions.ask(vec!["+1 555".into(), "1666".into()])).unwrap();
        assert_eq!(first, vec!["+1 555", "1666"]);
        assert_eq!(questions.ask(vec!["+1 555".into()]), None, "already asked");
        let (_, second) = inputs(questions.ask(vec!["1666".into(), "1777".into()])).unwrap();
        assert_eq!(second, vec!["1777"]);
        let answer = vec![
            ContactCheck { input: "+1 555".into(), status: "valid".into(), wa_id: Some("1555".into()) },
            ContactCheck { input: "1666".into(), status: "invalid".into(), wa_id: None },
            ContactCheck { input: "1888".into(), status: "maybe".into(), wa_id: None },
        ];
        let rows = questions.answered(&id, answer);
        assert_eq!(rows.len(), 2, "unknown statuses are left out");
        assert_eq!((rows[0].status, rows[0].wa_id.as_deref()), (ContactStatus::Valid, Some("1555")));
        assert_eq!(rows[1].status, ContactStatus::Invalid);
        assert!(questions.ask(vec!["+1 555".into()]).is_some(), "answered: may be asked again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_question_is_asked_again_after_the_timeout() {
        let mut questions = ContactQuestions::default();
        assert!(questions.ask(vec!["1".into()]).is_some());
        tokio::time::advance(ANSWER_TIMEOUT / 2).await;
        assert!(questions.ask(vec!["1".into()]).is_none());
        tokio::time::advance(ANSWER_TIMEOUT).await;
        assert!(questions.ask(vec!["1".into()]).is_some());
    }
}
