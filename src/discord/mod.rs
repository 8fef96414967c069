//! The only code that talks HTTP: a twilight-http client behind one API-base seam, pages parsed
//! with each message's raw JSON kept byte for byte, rate-limit headers, and error classification.

pub mod client;
pub mod error;
pub mod headers;
pub mod page;
pub mod route;

pub use client::DiscordClient;
pub use error::{ApiError, TransientKind};
pub use headers::RateLimitHeaders;
pub use page::{Anomaly, ChannelInfo, FetchedMessage, Page};
pub use route::Route;

/// Discord's largest page of messages.
pub const PAGE_LIMIT: u16 = 100;
