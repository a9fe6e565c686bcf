//! Contacts, trust decisions, safety numbers and history.

use super::*;

impl Client {
    /// Every contact, sorted by name.
    pub fn contacts(&mut self) -> Result<Vec<Contact>, ClientError> {
        let tx = self.store.tx()?;
        let names: Vec<String> = tx.get("contact-list", KEY_SELF)?.unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            if let Some(c) = tx.get::<Contact>(NS_CONTACT, &name)? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One contact.
    pub fn contact(&mut self, name: &str) -> Result<Option<Contact>, ClientError> {
        Ok(self.store.tx()?.get(NS_CONTACT, name)?)
    }

    pub(super) fn put_contact(
        tx: &crate::store::Tx<'_>,
        contact: &Contact,
    ) -> Result<(), ClientError> {
        let mut names: Vec<String> = tx.get("contact-list", KEY_SELF)?.unwrap_or_default();
        if !names.contains(&contact.name) {
            names.push(contact.name.clone());
            tx.put("contact-list", KEY_SELF, &names)?;
        }
        tx.put(NS_CONTACT, &contact.name, contact)?;
        tx.put(NS_CONTACT_BY_KEY, &contact.identity_key, &contact.name)?;
        Ok(())
    }

    /// Fetch `name`'s bundle and start a session (trust on first use). For a known contact
    /// whose relay-served key differs from the trusted one, the change is recorded and
    /// [`ClientError::KeyChanged`] returned.
    pub async fn add_contact(&mut self, name: &str) -> Result<Contact, ClientError> {
        if name == self.config.name {
            return Err(ClientError::Invalid("that is your own name".into()));
        }
        if !hush_proto::relay::is_valid_name(name) {
            return Err(ClientError::Invalid(format!("invalid name {name:?}")));
        }
        let bundle = self.fetch_bundle(name).await?;
        self.start_session(name, bundle)
    }

    /// `name`'s prekey bundle as the relay serves it (not yet verified).
    pub(super) async fn fetch_bundle(&mut self, name: &str) -> Result<PrekeyBundle, ClientError> {
        match self
            .request(&Request::FetchBundle {
                name: name.to_owned(),
            })
            .await
        {
            Ok(Reply::Bundle(b)) => Ok(b),
            Ok(_) => Err(ClientError::Network(NetError::UnexpectedReply)),
            Err(ClientError::Relay(e)) if e.code == ErrorCode::UnknownUser => {
                Err(ClientError::UnknownUser(name.to_owned()))
            }
            Err(e) => Err(e),
        }
    }

    /// Start a session from a bundle the relay served for `name`: the identity checks, then
    /// the bundle is verified against the profile the contact requires (`hush-v2` for a new
    /// contact), so a `hush-v1` session is never started with a `hush-v2` contact. A `hush-v2`
    /// session marks the contact `hush-v2` for good, in the same commit.
    pub(super) fn start_session(
        &mut self,
        name: &str,
        bundle: PrekeyBundle,
    ) -> Result<Contact, ClientError> {
        let key_hex = hex::encode(bundle.identity_key.as_bytes());
        // One identity has one name: a key we know under another name is a relay substitution
        // (or that contact lost their name). Taking it would move the contact to this name.
        let owner: Option<String> = self.store.tx()?.get(NS_CONTACT_BY_KEY, &key_hex)?;
        if let Some(owner) = owner.filter(|owner| owner != name) {
            let holds_key = self.contact(&owner)?.is_some_and(|c| {
                c.identity_key == key_hex || c.changed_key.as_deref() == Some(key_hex.as_str())
            });
            if holds_key {
                return Err(ClientError::Invalid(format!(
                    "the relay answered for {name} with the identity key of your contact {owner}; \
                     refusing it (one identity has one name: a relay substitution, unless {owner} \
                     lost their name and took this one)"
                )));
            }
        }
        let existing: Option<Contact> = self.store.tx()?.get(NS_CONTACT, name)?;
        if let Some(mut contact) = existing.clone() {
            if contact.identity_key != key_hex {
                contact.changed_key = Some(key_hex);
                let tx = self.store.tx()?;
                Self::put_contact(&tx, &contact)?;
                tx.commit()?;
                return Err(ClientError::KeyChanged(name.to_owned()));
            }
        }
        let required = existing.as_ref().map_or(Profile::CURRENT, |c| c.required);
        let verified = bundle.verify(required).map_err(|source| match source {
            SessionError::Downgrade { required, offered } => ClientError::Downgrade {
                name: name.to_owned(),
                required,
                offered,
                why: if existing.is_some() {
                    " (they used hush-v2 before)"
                } else {
                    " (every new contact)"
                },
            },
            source => ClientError::Session {
                name: name.to_owned(),
                source,
            },
        })?;
        let session =
            Session::initiate(&mut OsRng, &self.identity, &verified).map_err(|source| {
                ClientError::Session {
                    name: name.to_owned(),
                    source,
                }
            })?;
        let mut contact = existing.unwrap_or(Contact {
            name: name.to_owned(),
            identity_key: key_hex,
            verified: false,
            changed_key: None,
            unread: 0,
            required: Profile::CURRENT,
        });
        contact.required = contact.required.max(session.profile());
        let tx = self.store.tx()?;
        // We have just seen the contact's bundle: no upgrade check is due for a while.
        Self::record_upgrade_check(&tx, name, now_ms())?;
        let mut sessions = tx
            .get::<SessionSet>(NS_SESSIONS, name)?
            .unwrap_or_default()
            .load()?;
        sessions.insert(0, session);
        tx.put(NS_SESSIONS, name, &SessionSet::from_sessions(&sessions))?;
        Self::put_contact(&tx, &contact)?;
        tx.commit()?;
        Ok(contact)
    }

    /// The profile (`hush-v1` or `hush-v2`) of the session we would send `name` the next
    /// message on; else of the newest session with them; `None` without a session.
    pub fn session_profile(&mut self, name: &str) -> Result<Option<Profile>, ClientError> {
        let tx = self.store.tx()?;
        let Some(contact) = tx.get::<Contact>(NS_CONTACT, name)? else {
            return Err(ClientError::NoSuchContact(name.into()));
        };
        let sessions = tx
            .get::<SessionSet>(NS_SESSIONS, name)?
            .unwrap_or_default()
            .load()?;
        let trusted = contact.key()?;
        Ok(sessions
            .iter()
            .find(|s| sendable(s, &contact, &trusted))
            .or(sessions.first())
            .map(Session::profile))
    }

    /// The safety number with a contact.
    pub fn safety_number(&mut self, name: &str) -> Result<SafetyNumber, ClientError> {
        let contact = self
            .contact(name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        let key = match &contact.changed_key {
            Some(k) => parse_identity(k)?,
            None => contact.key()?,
        };
        Ok(SafetyNumber::new(&self.identity.public_key(), &key))
    }

    /// Mark a contact verified after the user compared safety numbers.
    pub fn confirm_verified(&mut self, name: &str) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        let mut contact: Contact = tx
            .get(NS_CONTACT, name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        if contact.changed_key.is_some() {
            return Err(ClientError::KeyChanged(name.to_owned()));
        }
        contact.verified = true;
        Self::put_contact(&tx, &contact)?;
        tx.commit()?;
        Ok(())
    }

    /// Accept a contact's changed identity key. Old sessions are dropped; the next send starts
    /// a fresh one with the new key unless the new key already sent us a session.
    pub fn trust(&mut self, name: &str) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        let mut contact: Contact = tx
            .get(NS_CONTACT, name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        let Some(new_key) = contact.changed_key.take() else {
            return Ok(());
        };
        tx.delete(NS_CONTACT_BY_KEY, &contact.identity_key)?;
        contact.identity_key = new_key;
        contact.verified = false;
        let sessions = tx
            .get::<SessionSet>(NS_SESSIONS, name)?
            .unwrap_or_default()
            .load()?;
        let key = contact.key()?;
        let kept: Vec<Session> = sessions
            .into_iter()
            .filter(|s| *s.remote_identity() == key)
            .collect();
        tx.put(NS_SESSIONS, name, &SessionSet::from_sessions(&kept))?;
        Self::put_contact(&tx, &contact)?;
        tx.commit()?;
        Ok(())
    }

    /// History with a contact (or, for `#NAME`, of a group), oldest first.
    pub fn history(&mut self, name: &str) -> Result<Vec<HistoryEntry>, ClientError> {
        if let Some(group) = name.strip_prefix('#') {
            return self.group_history(group);
        }
        let tx = self.store.tx()?;
        Ok(tx
            .messages::<HistoryEntry>(name)?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    /// Clear a contact's (or a `#NAME` group's) unread count (the user looked).
    pub fn mark_read(&mut self, name: &str) -> Result<(), ClientError> {
        if let Some(group) = name.strip_prefix('#') {
            return self.group_mark_read(group);
        }
        let tx = self.store.tx()?;
        if let Some(mut c) = tx.get::<Contact>(NS_CONTACT, name)? {
            c.unread = 0;
            Self::put_contact(&tx, &c)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// Whether `session` may carry our next message to `contact`: with the trusted key, able to
/// send, and of at least the profile the contact requires (an old `hush-v1` session of a
/// contact now known to use `hush-v2` only decrypts late messages).
pub(super) fn sendable(session: &Session, contact: &Contact, trusted: &IdentityPublicKey) -> bool {
    *session.remote_identity() == *trusted
        && session.can_send()
        && session.profile() >= contact.required
}
