use std::iter::Sum;
use std::ops::Add;

use crate::{Error, Result};

/// Tokens a model call used: what a message it produced (or the prompt it answered) cost, as the
/// model's API reports it. The store keeps each message's usage and, on each conversation, the
/// running total of its messages' ([`Conversation::usage`](crate::Conversation::usage)); a
/// user's total over every conversation is [`ChatStore::usage`](crate::ChatStore::usage).
///
/// Its fields follow the APIs that report usage:
///
/// - `input_tokens`: the prompt, every token of it, cached or not. OpenAI's `input_tokens` (or
///   `prompt_tokens`) count them all; Anthropic reports cache reads and writes apart from
///   `input_tokens`, so add `cache_read_input_tokens` and `cache_creation_input_tokens` to it.
/// - `output_tokens`: the reply (OpenAI's `output_tokens` or `completion_tokens`, reasoning
///   included; Anthropic's `output_tokens`).
/// - `total_tokens`: OpenAI's `total_tokens`, which is input plus output. Some APIs count more
///   in their total (Gemini's `totalTokenCount` includes thinking tokens that its output count
///   leaves out), so a total may be larger than the sum, never smaller. [`Usage::new`] makes it
///   the sum; [`Usage::with_total`] sets the one an API reported.
///
/// Cost is not kept: no API reports it, prices change, and tokens times today's price is a
/// multiplication an application can do over any of these totals. Finer detail (cached or
/// reasoning tokens, the model's name) belongs in the message's metadata.
///
/// A message's usage is checked when it is appended: `input_tokens + output_tokens <=
/// total_tokens <=` [`Usage::MAX_TOKENS`], or [`Error::InvalidUsage`]. Totals (a conversation's,
/// a user's) are sums and may be larger. With the `serde` feature: `{"input_tokens",
/// "output_tokens", "total_tokens"}`, where a missing `total_tokens` reads as input plus output.
///
/// ```
/// use chatstore::{ChatStore, NewMessage, Usage, UserId};
///
/// let store = ChatStore::open(":memory:")?;
/// let alice = UserId::new("alice")?;
/// let conv = store.create_conversation(&alice, None)?.id;
/// store.append_messages(&alice, conv, &[
///     NewMessage::user("Plan my week"),
///     NewMessage::assistant("Here is a plan…").with_usage(Usage::new(1_200, 300)),
///     NewMessage::assistant("…and a shorter one.").with_usage(Usage::new(1_600, 80).with_total(1_700)),
/// ])?;
/// let totals = store.conversation(&alice, conv)?.usage;
/// assert_eq!((totals.input_tokens, totals.output_tokens, totals.total_tokens), (2_800, 380, 3_200));
/// assert_eq!(store.usage(&alice)?, totals);
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Usage"))]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the prompt, cached or not.
    pub input_tokens: u64,
    /// Tokens of the reply, reasoning included.
    pub output_tokens: u64,
    /// All the tokens the call counted: at least input plus output.
    pub total_tokens: u64,
}

impl Usage {
    /// The most tokens one message's usage may count (its total): 2³² − 1, far more than any
    /// model call, and small enough that a user's total over two billion such messages still
    /// fits the 64-bit columns that keep it.
    pub const MAX_TOKENS: u64 = u32::MAX as u64;

    /// No tokens: the total of a conversation without usage.
    pub const ZERO: Usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
    };

    /// The usage of a call that read `input_tokens` and wrote `output_tokens`; its total is
    /// their sum (saturating at `u64::MAX`, which an append refuses).
    ///
    /// ```
    /// use chatstore::Usage;
    /// assert_eq!(Usage::new(10, 5).total_tokens, 15);
    /// ```
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
        }
    }

    /// The same usage with the total an API reported (see [`Usage`]): at least input plus
    /// output, or an append refuses it.
    ///
    /// ```
    /// use chatstore::Usage;
    /// let gemini = Usage::new(100, 20).with_total(150); // 30 thinking tokens
    /// assert_eq!(gemini.total_tokens, 150);
    /// ```
    pub fn with_total(mut self, total_tokens: u64) -> Self {
        self.total_tokens = total_tokens;
        self
    }

    /// Whether it counts no token at all.
    pub fn is_zero(&self) -> bool {
        *self == Usage::ZERO
    }

    /// Checks a message's usage: input plus output at most the total, the total at most
    /// [`Usage::MAX_TOKENS`].
    pub(crate) fn validate(self) -> Result<Self> {
        let sum = self.input_tokens.checked_add(self.output_tokens);
        match sum {
            Some(sum) if sum <= self.total_tokens && self.total_tokens <= Self::MAX_TOKENS => {
                Ok(self)
            }
            _ => Err(Error::InvalidUsage {
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
                total_tokens: self.total_tokens,
                max: Self::MAX_TOKENS,
            }),
        }
    }

    /// The usage as the store's columns keep it (each at most [`Usage::MAX_TOKENS`] for a message;
    /// a total, a sum of such).
    pub(crate) fn to_db(self) -> (i64, i64, i64) {
        let column = |tokens: u64| i64::try_from(tokens).unwrap_or(i64::MAX);
        (
            column(self.input_tokens),
            column(self.output_tokens),
            column(self.total_tokens),
        )
    }

    /// The usage the columns hold; `None` if any is negative, which the store never writes.
    pub(crate) fn from_db(input: i64, output: i64, total: i64) -> Option<Self> {
        Some(Usage {
            input_tokens: u64::try_from(input).ok()?,
            output_tokens: u64::try_from(output).ok()?,
            total_tokens: u64::try_from(total).ok()?,
        })
    }
}

impl Add for Usage {
    type Output = Usage;

    /// Field by field, saturating (a sum of message usages never comes near `u64::MAX`).
    fn add(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            total_tokens: self.total_tokens.saturating_add(other.total_tokens),
        }
    }
}

impl Sum for Usage {
    /// The total of the usages, [`Usage::ZERO`] for none.
    ///
    /// ```
    /// use chatstore::Usage;
    /// let total: Usage = [Usage::new(1, 2), Usage::new(3, 4)].into_iter().sum();
    /// assert_eq!(total, Usage::new(4, 6));
    /// ```
    fn sum<I: Iterator<Item = Usage>>(usages: I) -> Usage {
        usages.fold(Usage::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Usage> for Usage {
    /// The total of the usages, [`Usage::ZERO`] for none.
    fn sum<I: Iterator<Item = &'a Usage>>(usages: I) -> Usage {
        usages.copied().sum()
    }
}

/// The JSON a usage is read from: the total may be left out.
#[cfg(feature = "serde")]
mod wire {
    #[derive(serde::Deserialize)]
    pub(super) struct Usage {
        input_tokens: u64,
        output_tokens: u64,
        total_tokens: Option<u64>,
    }

    impl From<Usage> for super::Usage {
        fn from(wire: Usage) -> Self {
            let usage = super::Usage::new(wire.input_tokens, wire.output_tokens);
            match wire.total_tokens {
                Some(total) => usage.with_total(total),
                None => usage,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_below_the_sum_or_above_the_limit_is_refused() {
        assert!(Usage::new(2, 3).validate().is_ok());
        assert!(Usage::new(2, 3).with_total(6).validate().is_ok());
        assert!(Usage::new(2, 3).with_total(4).validate().is_err());
        let max = Usage::MAX_TOKENS;
        assert!(Usage::new(max, 0).validate().is_ok());
        assert!(Usage::new(max, 1).validate().is_err());
        assert!(Usage::new(u64::MAX, u64::MAX).validate().is_err());
        assert!(Usage::new(0, 0).with_total(max + 1).validate().is_err());
    }

    #[test]
    fn a_usage_round_trips_through_its_columns() {
        let usage = Usage::new(7, 8).with_total(20);
        let (i, o, t) = usage.to_db();
        assert_eq!(Usage::from_db(i, o, t), Some(usage));
        assert_eq!(Usage::from_db(-1, 0, 0), None);
    }
}
