// @generated automatically by Diesel CLI.
//! Diesel's view of the archive tables: `diesel print-schema` over migrations/, with
//! `schema.patch` applied (diesel.toml); regenerate it, never edit it by hand.
//!
//! The patch: snowflake columns are `BigInt` where the DDL says `INTEGER` (SQLite's INTEGER is
//! 64-bit; print-schema maps it to `Integer`), and `messages` is keyed by its snowflake `id`
//! (unique) rather than the rowid print-schema finds (a physical detail: rows are appended in
//! arrival order).

diesel::table! {
    anomalies (id) {
        id -> Integer,
        channel_id -> BigInt,
        message_id -> Nullable<Text>,
        reason -> Text,
        raw_json -> Text,
        seen_at -> Text,
    }
}

diesel::table! {
    archive_meta (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    channels (id) {
        id -> BigInt,
        guild_id -> Nullable<BigInt>,
        name -> Nullable<Text>,
        kind -> Integer,
        parent_id -> Nullable<BigInt>,
        last_message_id -> Nullable<BigInt>,
        skip_reason -> Nullable<Text>,
        updated_at -> Text,
        skipped_at -> Nullable<Text>,
        failure -> Nullable<Text>,
        finished_at -> Nullable<Text>,
    }
}

diesel::table! {
    checkpoints (channel_id) {
        channel_id -> BigInt,
        last_message_id -> BigInt,
        last_fetch_timestamp -> Text,
        oldest_message_id -> Nullable<BigInt>,
        oldest_message_timestamp -> Nullable<Text>,
        total_messages -> BigInt,
        complete -> Bool,
        updated_at -> Text,
    }
}

diesel::table! {
    fetch_slices (channel_id, after_id) {
        channel_id -> BigInt,
        after_id -> BigInt,
        until_id -> BigInt,
        cursor_id -> BigInt,
        done -> Bool,
        reached_end -> Bool,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        channel_id -> BigInt,
        guild_id -> Nullable<BigInt>,
        author_id -> BigInt,
        author_name -> Text,
        author_is_bot -> Bool,
        content -> Text,
        created_at -> Text,
        edited_at -> Nullable<Text>,
        message_type -> Integer,
        reference_message_id -> Nullable<BigInt>,
        raw_json -> Text,
    }
}

diesel::table! {
    runs (id) {
        id -> Integer,
        started_at -> Text,
        ended_at -> Nullable<Text>,
        command -> Text,
        exit_code -> Nullable<Integer>,
        stats_json -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    anomalies,
    archive_meta,
    channels,
    checkpoints,
    fetch_slices,
    messages,
    runs,
);
