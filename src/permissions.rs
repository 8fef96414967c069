//! The bot's effective permissions in a channel, computed as Discord documents, so that
//! channels it cannot read are never requested (Discord answers `200 []` without Read Message
//! History: without this check such a channel would look empty, not forbidden).

use serde::{Deserialize, Deserializer};

pub const ADMINISTRATOR: u64 = 1 << 3;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
pub const CONNECT: u64 = 1 << 20;
pub const MANAGE_THREADS: u64 = 1 << 34;
pub const ALL: u64 = u64::MAX;

/// A role as `GET /guilds/{id}` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Role {
    #[serde(deserialize_with = "id_string")]
    pub id: u64,
    #[serde(deserialize_with = "bits")]
    pub permissions: u64,
}

/// A channel permission overwrite: type 0 is a role, 1 a member.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Overwrite {
    #[serde(deserialize_with = "id_string")]
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(deserialize_with = "bits", default)]
    pub allow: u64,
    #[serde(deserialize_with = "bits", default)]
    pub deny: u64,
}

/// Who the bot is in the guild: what permission math needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotMember {
    pub user_id: u64,
    pub guild_id: u64,
    pub owner_id: Option<u64>,
    pub roles: Vec<u64>,
}

/// The guild-wide permissions: @everyone, then the member's roles (OR); the owner and
/// Administrator have everything.
pub fn base_permissions(member: &BotMember, roles: &[Role]) -> u64 {
    if member.owner_id == Some(member.user_id) {
        return ALL;
    }
    // The @everyone role's ID is the guild's.
    let mut perms = roles
        .iter()
        .find(|r| r.id == member.guild_id)
        .map_or(0, |r| r.permissions);
    for role in roles.iter().filter(|r| member.roles.contains(&r.id)) {
        perms |= role.permissions;
    }
    if perms & ADMINISTRATOR != 0 {
        ALL
    } else {
        perms
    }
}

/// Applies a channel's overwrites in Discord's order: @everyone, the member's roles
/// (denies then allows, combined), then the member itself.
pub fn channel_permissions(base: u64, member: &BotMember, overwrites: &[Overwrite]) -> u64 {
    if base & ADMINISTRATOR != 0 {
        return ALL;
    }
    let mut perms = base;
    if let Some(everyone) = overwrites.iter().find(|o| o.id == member.guild_id) {
        perms &= !everyone.deny;
        perms |= everyone.allow;
    }
    let (mut allow, mut deny) = (0, 0);
    for o in overwrites
        .iter()
        .filter(|o| o.kind == 0 && o.id != member.guild_id && member.roles.contains(&o.id))
    {
        allow |= o.allow;
        deny |= o.deny;
    }
    perms &= !deny;
    perms |= allow;
    if let Some(own) = overwrites
        .iter()
        .find(|o| o.kind == 1 && o.id == member.user_id)
    {
        perms &= !own.deny;
        perms |= own.allow;
    }
    perms
}

/// Why the bot cannot read a channel of this kind with these permissions, if it cannot. On a
/// voice or stage channel, a denied Connect implicitly denies the channel's other permissions
/// (Discord's permissions documentation, "Implicit Permissions"), its text chat's included.
pub fn unreadable_reason(kind: i32, perms: u64) -> Option<&'static str> {
    if perms & VIEW_CHANNEL == 0 {
        Some("no permission: View Channel")
    } else if perms & READ_MESSAGE_HISTORY == 0 {
        Some("no permission: Read Message History")
    } else if matches!(kind, 2 | 13) && perms & CONNECT == 0 {
        Some("no permission: Connect (voice channel)")
    } else {
        None
    }
}

fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bits(d)
}

/// Permission bit sets and IDs are strings in the API (numbers accepted too).
fn bits<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Num(u64),
        Str(String),
    }
    match Either::deserialize(d)? {
        Either::Num(n) => Ok(n),
        Either::Str(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a number: {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: u64 = 100;
    const BOT: u64 = 7;
    const MODS: u64 = 200;
    const MUTED: u64 = 300;

    fn member(roles: &[u64]) -> BotMember {
        BotMember {
            user_id: BOT,
            guild_id: GUILD,
            owner_id: Some(1),
            roles: roles.to_vec(),
        }
    }

    fn role(id: u64, permissions: u64) -> Role {
        Role { id, permissions }
    }

    fn ow(id: u64, kind: u8, allow: u64, deny: u64) -> Overwrite {
        Overwrite {
            id,
            kind,
            allow,
            deny,
        }
    }

    const READ: u64 = VIEW_CHANNEL | READ_MESSAGE_HISTORY;

    #[test]
    fn everyone_and_roles_are_ored() {
        let roles = [role(GUILD, VIEW_CHANNEL), role(MODS, READ_MESSAGE_HISTORY)];
        assert_eq!(base_permissions(&member(&[]), &roles), VIEW_CHANNEL);
        assert_eq!(base_permissions(&member(&[MODS]), &roles), READ);
    }

    #[test]
    fn administrator_and_owner_see_everything() {
        let roles = [role(GUILD, 0), role(MODS, ADMINISTRATOR)];
        let base = base_permissions(&member(&[MODS]), &roles);
        assert_eq!(base, ALL);
        let deny_all = [ow(GUILD, 0, 0, READ)];
        assert_eq!(channel_permissions(base, &member(&[MODS]), &deny_all), ALL);
        let owner = BotMember {
            owner_id: Some(BOT),
            ..member(&[])
        };
        assert_eq!(base_permissions(&owner, &[role(GUILD, 0)]), ALL);
    }

    #[test]
    fn overwrites_apply_in_discords_order() {
        let m = member(&[MODS, MUTED]);
        let base = READ;
        // @everyone denied, a role allows it back.
        let o = [ow(GUILD, 0, 0, VIEW_CHANNEL), ow(MODS, 0, VIEW_CHANNEL, 0)];
        assert_eq!(channel_permissions(base, &m, &o), READ);
        // Role allows win over role denies (combined, then applied: deny first).
        let o = [ow(MODS, 0, VIEW_CHANNEL, 0), ow(MUTED, 0, 0, VIEW_CHANNEL)];
        assert_eq!(channel_permissions(base, &m, &o), READ);
        // The member's own overwrite wins over roles.
        let o = [ow(MODS, 0, VIEW_CHANNEL, 0), ow(BOT, 1, 0, VIEW_CHANNEL)];
        assert_eq!(channel_permissions(base, &m, &o), READ_MESSAGE_HISTORY);
        // Overwrites for roles the bot lacks, or other members, change nothing.
        let o = [ow(999, 0, 0, READ), ow(8, 1, 0, READ)];
        assert_eq!(channel_permissions(base, &m, &o), READ);
    }

    #[test]
    fn reading_needs_view_history_and_connect_for_voice() {
        assert_eq!(unreadable_reason(0, READ), None);
        assert!(unreadable_reason(0, VIEW_CHANNEL)
            .unwrap()
            .contains("History"));
        assert!(unreadable_reason(0, READ_MESSAGE_HISTORY)
            .unwrap()
            .contains("View"));
        assert!(unreadable_reason(2, READ).unwrap().contains("Connect"));
        assert_eq!(unreadable_reason(2, READ | CONNECT), None);
    }

    #[test]
    fn api_shapes_parse() {
        let r: Role = serde_json::from_str(
            r#"{"id":"100","name":"@everyone","permissions":"1071698660929","position":0}"#,
        )
        .unwrap();
        assert_eq!(r.permissions, 1071698660929);
        let o: Overwrite =
            serde_json::from_str(r#"{"id":"7","type":1,"allow":"1024","deny":"0"}"#).unwrap();
        assert_eq!(o, ow(7, 1, 1024, 0));
    }
}
