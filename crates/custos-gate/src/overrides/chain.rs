//! The override chain as a state machine: opened by a request, moved by approver actions,
//! decided by the requirements, rebuilt from its ledger records.

use std::collections::{BTreeSet, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::request::{check_id, check_plan_hash, check_text, check_user, invalid};
use super::{
    ApprovalGiven, ApprovalRequirements, ApproverKeys, ApproverSignature, DenialGiven,
    GrantingApprover, Outcome, OverrideApproved, OverrideConfig, OverrideDenied, OverrideDigest,
    OverrideError, OverrideEvent, OverrideExpired, OverrideRequest, OverrideRequested,
    OverrideWithdrawn, RecordedSignature, ReviewFacts, Role, Status, display_time,
    verify_approver_signature,
};

/// Something a person does to a pending override. Times are nanoseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverrideAction {
    /// Approve the override of this plan.
    Approve {
        /// Who (`user:<id>`, as authenticated).
        approver: String,
        /// Their roles, as the caller's authorisation knows them; names other than `admin`,
        /// `security`, `finance`, `manager` are ignored.
        roles: Vec<String>,
        /// The plan hash they approve; must be the request's.
        plan_hash: String,
        /// Their comment (may be empty; at most [`super::MAX_TEXT_BYTES`]).
        comment: String,
        /// Their signature over the override digest, if they sign.
        signature: Option<ApproverSignature>,
        /// When.
        at: i128,
    },
    /// Deny the override: blocks it for good.
    Deny {
        /// Who (`user:<id>`).
        approver: String,
        /// Their roles (as for `Approve`).
        roles: Vec<String>,
        /// Why (required).
        reason: String,
        /// When.
        at: i128,
    },
    /// Withdraw the request (the requester only).
    Withdraw {
        /// Who (must be the requester).
        by: String,
        /// Why (required).
        reason: String,
        /// When.
        at: i128,
    },
}

impl OverrideAction {
    fn at(&self) -> i128 {
        match self {
            OverrideAction::Approve { at, .. }
            | OverrideAction::Deny { at, .. }
            | OverrideAction::Withdraw { at, .. } => *at,
        }
    }
}

/// The result of an accepted action: the new status and the records to append, in order
/// (the action's record, then the outcome's if the action decided the chain).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the records must be appended to the ledger"]
pub struct Transition {
    /// The status after the action.
    pub status: Status,
    /// The records to append.
    pub events: Vec<OverrideEvent>,
}

/// What a pending override still needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outstanding {
    /// More distinct approvers needed.
    pub approvers: u32,
    /// Required roles no approver holds yet.
    pub roles: BTreeSet<Role>,
}

/// One override request and its approvals, denial or withdrawal. Every change goes through
/// [`OverrideChain::apply`] or [`OverrideChain::expire`], which say what to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideChain {
    request: OverrideRequest,
    review_decision: Outcome,
    digest: OverrideDigest,
    requirements: ApprovalRequirements,
    expires_at: i128,
    approvals: Vec<ApprovalGiven>,
    denial: Option<DenialGiven>,
    withdrawal: Option<OverrideWithdrawn>,
    status: Status,
    decided_at: Option<i128>,
}

impl OverrideChain {
    /// Opens the chain for `request` over `review`: validates the request and the
    /// configuration, checks that the review may be overridden and is the one the request
    /// names, derives the requirements and the digest. Returns the chain and its
    /// `override_requested` record.
    pub fn open(
        request: OverrideRequest,
        review: &ReviewFacts,
        config: &OverrideConfig,
    ) -> Result<(Self, OverrideEvent), OverrideError> {
        request.validate()?;
        review.check_overridable(&request)?;
        let requirements = ApprovalRequirements::derive(review, config)?;
        let record = OverrideRequested {
            digest: OverrideDigest::of(&request)?,
            expires_at: request.requested_at.saturating_add(config.ttl_nanos()),
            review_decision: review.decision,
            requirements,
            request,
        };
        let chain = Self::from_requested(&record)?;
        Ok((chain, OverrideEvent::Requested(record)))
    }

    /// The chain as an `override_requested` record left it; checks the record.
    fn from_requested(record: &OverrideRequested) -> Result<Self, OverrideError> {
        record.request.validate()?;
        if record.review_decision == Outcome::Approved {
            return Err(OverrideError::NotOverridable {
                decision: record.review_decision,
            });
        }
        record.requirements.check()?;
        let digest = OverrideDigest::of(&record.request)?;
        if digest != record.digest {
            return Err(OverrideError::Rebuild(format!(
                "the recorded digest {} is not the request's {}",
                record.digest.to_hex(),
                digest.to_hex()
            )));
        }
        if record.expires_at <= record.request.requested_at
            || custos_core::time::format_utc_nanos(record.expires_at).is_none()
        {
            return Err(invalid(
                "expires_at",
                "must come after requested_at, within the years 0000–9999",
            ));
        }
        Ok(OverrideChain {
            request: record.request.clone(),
            review_decision: record.review_decision,
            digest,
            requirements: record.requirements.clone(),
            expires_at: record.expires_at,
            approvals: Vec::new(),
            denial: None,
            withdrawal: None,
            status: Status::Pending,
            decided_at: None,
        })
    }

    /// Applies one action. On success returns the new status and the records to append; on
    /// error the chain is unchanged. `keys` resolves the approver's registered signing key.
    ///
    /// Refused: any action on a decided chain, or at or after `expires_at`, or dated before
    /// the request; an actor who is not `user:<id>`; an approver or denier without a role
    /// custos knows, or who is the requester; an approver who already approved; an approval
    /// for another plan hash; an unsigned approval when signatures are required; a signature
    /// whose key is not registered for the approver or that does not verify; an empty
    /// reason for a denial or a withdrawal; a withdrawal by anyone but the requester.
    pub fn apply(
        &mut self,
        action: OverrideAction,
        keys: &dyn ApproverKeys,
    ) -> Result<Transition, OverrideError> {
        self.check_open(action.at())?;
        match action {
            OverrideAction::Approve {
                approver,
                roles,
                plan_hash,
                comment,
                signature,
                at,
            } => {
                let roles = self.check_actor(&approver, &roles, "approve")?;
                if self.approvals.iter().any(|a| a.approver == approver) {
                    return Err(OverrideError::DuplicateApprover { approver });
                }
                check_plan_hash("plan_hash", &plan_hash)?;
                if plan_hash != self.request.plan_hash {
                    return Err(OverrideError::PlanHashMismatch {
                        approver,
                        approved: plan_hash,
                        requested: self.request.plan_hash.clone(),
                    });
                }
                check_text("comment", &comment, false)?;
                let signature = self.check_signature(&approver, signature, keys)?;
                let record = ApprovalGiven {
                    override_id: self.request.id.clone(),
                    review_request_id: self.request.review_request_id.clone(),
                    approver,
                    roles,
                    plan_hash,
                    comment,
                    signature,
                    at,
                };
                self.approvals.push(record.clone());
                let mut events = vec![OverrideEvent::Approval(record)];
                if self.outstanding().is_none() {
                    self.decide(Status::Approved, at);
                    events.push(OverrideEvent::Approved(self.approved_record(at)));
                }
                Ok(Transition {
                    status: self.status,
                    events,
                })
            }
            OverrideAction::Deny {
                approver,
                roles,
                reason,
                at,
            } => {
                let roles = self.check_actor(&approver, &roles, "deny")?;
                check_text("reason", &reason, true)?;
                let denial = DenialGiven {
                    override_id: self.request.id.clone(),
                    review_request_id: self.request.review_request_id.clone(),
                    approver,
                    roles,
                    reason,
                    at,
                };
                let denied = OverrideDenied {
                    override_id: denial.override_id.clone(),
                    review_request_id: denial.review_request_id.clone(),
                    denied_by: denial.approver.clone(),
                    reason: denial.reason.clone(),
                    at,
                };
                self.denial = Some(denial.clone());
                self.decide(Status::Denied, at);
                Ok(Transition {
                    status: self.status,
                    events: vec![OverrideEvent::Denial(denial), OverrideEvent::Denied(denied)],
                })
            }
            OverrideAction::Withdraw { by, reason, at } => {
                check_user("by", &by)?;
                if by != self.request.requested_by {
                    return Err(OverrideError::NotRequester {
                        principal: by,
                        requester: self.request.requested_by.clone(),
                    });
                }
                check_text("reason", &reason, true)?;
                let withdrawal = OverrideWithdrawn {
                    override_id: self.request.id.clone(),
                    review_request_id: self.request.review_request_id.clone(),
                    by,
                    reason,
                    at,
                };
                self.withdrawal = Some(withdrawal.clone());
                self.decide(Status::Withdrawn, at);
                Ok(Transition {
                    status: self.status,
                    events: vec![OverrideEvent::Withdrawn(withdrawal)],
                })
            }
        }
    }

    /// Records the expiry of a chain still pending at `now` (at or after `expires_at`);
    /// `None` when there is nothing to record.
    pub fn expire(&mut self, now: i128) -> Option<OverrideEvent> {
        if self.status.is_final() || now < self.expires_at {
            return None;
        }
        custos_core::time::format_utc_nanos(now)?;
        self.decide(Status::Expired, now);
        Some(OverrideEvent::Expired(OverrideExpired {
            override_id: self.request.id.clone(),
            review_request_id: self.request.review_request_id.clone(),
            expires_at: self.expires_at,
            approvers: self.approvals.iter().map(|a| a.approver.clone()).collect(),
            at: now,
        }))
    }

    /// The status as recorded.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The status at `now`: a pending chain whose time ran out reads as expired (record it
    /// with [`OverrideChain::expire`]).
    pub fn status_at(&self, now: i128) -> Status {
        if self.status == Status::Pending && now >= self.expires_at {
            Status::Expired
        } else {
            self.status
        }
    }

    /// What a pending chain still needs; `None` once the requirements are met.
    pub fn outstanding(&self) -> Option<Outstanding> {
        let held: BTreeSet<Role> = self
            .approvals
            .iter()
            .flat_map(|a| a.roles.iter().copied())
            .collect();
        if self.requirements.met(self.approvals.len(), &held) {
            return None;
        }
        let count = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        Some(Outstanding {
            approvers: self.requirements.min_approvers.saturating_sub(count),
            roles: self.requirements.missing_roles(&held),
        })
    }

    /// The request.
    pub fn request(&self) -> &OverrideRequest {
        &self.request
    }

    /// The decision of the overridden review.
    pub fn review_decision(&self) -> Outcome {
        self.review_decision
    }

    /// The override digest approvers sign.
    pub fn digest(&self) -> &OverrideDigest {
        &self.digest
    }

    /// What the chain needs.
    pub fn requirements(&self) -> &ApprovalRequirements {
        &self.requirements
    }

    /// When a pending chain expires.
    pub fn expires_at(&self) -> i128 {
        self.expires_at
    }

    /// Every approval, in order, with its signature.
    pub fn approvals(&self) -> &[ApprovalGiven] {
        &self.approvals
    }

    /// The denial, if denied.
    pub fn denial(&self) -> Option<&DenialGiven> {
        self.denial.as_ref()
    }

    /// The withdrawal, if withdrawn.
    pub fn withdrawal(&self) -> Option<&OverrideWithdrawn> {
        self.withdrawal.as_ref()
    }

    /// When it was decided (approved, denied, expired or withdrawn).
    pub fn decided_at(&self) -> Option<i128> {
        self.decided_at
    }

    /// Rebuilds the chain from its records, in ledger order: the first must be
    /// `override_requested`; each approval, denial and withdrawal is applied again (a
    /// signature is checked against the public key recorded with it); each outcome record
    /// must be the one the replay produces. A missing outcome at the very end is tolerated
    /// (it follows from the records before it). Records of another override are an error.
    pub fn rebuild<'a>(
        events: impl IntoIterator<Item = &'a OverrideEvent>,
    ) -> Result<Self, OverrideError> {
        let mut events = events.into_iter();
        let mut chain = match events.next() {
            Some(OverrideEvent::Requested(record)) => Self::from_requested(record)?,
            Some(other) => {
                return Err(OverrideError::Rebuild(format!(
                    "the first record is {}, not {}",
                    other.event_type(),
                    super::EVENT_REQUESTED
                )));
            }
            None => return Err(OverrideError::Rebuild("no records".to_owned())),
        };
        let mut expected: VecDeque<OverrideEvent> = VecDeque::new();
        for event in events {
            if event.override_id() != chain.request.id {
                return Err(OverrideError::Rebuild(format!(
                    "a {} record of override {} among those of {}",
                    event.event_type(),
                    event.override_id(),
                    chain.request.id
                )));
            }
            if let Some(next) = expected.pop_front() {
                if &next != event {
                    return Err(mismatch(&next, event));
                }
                continue;
            }
            let produced = match event {
                OverrideEvent::Approval(record) => {
                    let keys = RecordedKey::of(record)?;
                    chain.apply(approve_action(record), &keys)?.events
                }
                OverrideEvent::Denial(record) => {
                    chain
                        .apply(
                            OverrideAction::Deny {
                                approver: record.approver.clone(),
                                roles: role_names(&record.roles),
                                reason: record.reason.clone(),
                                at: record.at,
                            },
                            &RecordedKey::None,
                        )?
                        .events
                }
                OverrideEvent::Withdrawn(record) => {
                    chain
                        .apply(
                            OverrideAction::Withdraw {
                                by: record.by.clone(),
                                reason: record.reason.clone(),
                                at: record.at,
                            },
                            &RecordedKey::None,
                        )?
                        .events
                }
                OverrideEvent::Expired(record) => chain.expire(record.at).into_iter().collect(),
                OverrideEvent::Requested(_)
                | OverrideEvent::Approved(_)
                | OverrideEvent::Denied(_) => {
                    return Err(OverrideError::Rebuild(format!(
                        "an unexpected {} record (status {})",
                        event.event_type(),
                        chain.status.as_str()
                    )));
                }
            };
            expected.extend(produced);
            match expected.pop_front() {
                Some(first) if &first == event => {}
                Some(first) => return Err(mismatch(&first, event)),
                None => {
                    return Err(OverrideError::Rebuild(format!(
                        "the {} record changes nothing (status {})",
                        event.event_type(),
                        chain.status.as_str()
                    )));
                }
            }
        }
        Ok(chain)
    }

    fn decide(&mut self, status: Status, at: i128) {
        self.status = status;
        self.decided_at = Some(at);
    }

    /// Refuses actions on a decided or expired chain and actions dated before the request.
    fn check_open(&self, at: i128) -> Result<(), OverrideError> {
        if self.status.is_final() {
            return Err(OverrideError::AlreadyDecided {
                override_id: self.request.id.clone(),
                status: self.status,
            });
        }
        if at >= self.expires_at {
            return Err(OverrideError::Expired {
                override_id: self.request.id.clone(),
                expires_at: display_time(self.expires_at),
            });
        }
        if at < self.request.requested_at {
            return Err(OverrideError::BeforeRequest {
                at: display_time(at),
                requested_at: display_time(self.request.requested_at),
            });
        }
        Ok(())
    }

    /// An approver or denier: a user holding a known role, not the requester. Returns the
    /// known roles.
    fn check_actor(
        &self,
        principal: &str,
        roles: &[String],
        action: &'static str,
    ) -> Result<BTreeSet<Role>, OverrideError> {
        check_user("approver", principal)?;
        let known: BTreeSet<Role> = roles.iter().filter_map(|r| Role::parse(r)).collect();
        if known.is_empty() {
            return Err(OverrideError::NoApproverRole {
                principal: principal.to_owned(),
                roles: roles.join(", "),
            });
        }
        if principal == self.request.requested_by {
            return Err(OverrideError::SeparationOfDuties {
                principal: principal.to_owned(),
                action,
            });
        }
        Ok(known)
    }

    /// Checks an approval's signature (or its absence) and returns it as recorded.
    fn check_signature(
        &self,
        approver: &str,
        signature: Option<ApproverSignature>,
        keys: &dyn ApproverKeys,
    ) -> Result<Option<RecordedSignature>, OverrideError> {
        let Some(signature) = signature else {
            if self.requirements.require_signatures {
                return Err(OverrideError::SignatureRequired {
                    approver: approver.to_owned(),
                });
            }
            return Ok(None);
        };
        check_id("signature.key_id", &signature.key_id)?;
        let public_key = keys
            .public_key(approver, &signature.key_id)
            .ok_or_else(|| OverrideError::UnknownKey {
                approver: approver.to_owned(),
                key_id: signature.key_id.clone(),
            })?;
        verify_approver_signature(&self.digest, approver, &signature, &public_key).map_err(
            |problem| OverrideError::Signature {
                approver: approver.to_owned(),
                key_id: signature.key_id.clone(),
                problem,
            },
        )?;
        Ok(Some(RecordedSignature {
            key_id: signature.key_id,
            public_key: STANDARD.encode(public_key),
            ed25519: signature.ed25519,
        }))
    }

    fn approved_record(&self, at: i128) -> OverrideApproved {
        OverrideApproved {
            override_id: self.request.id.clone(),
            review_request_id: self.request.review_request_id.clone(),
            plan_hash: self.request.plan_hash.clone(),
            decision_seq: self.request.decision_seq,
            review_decision: self.review_decision,
            digest: self.digest,
            approvers: self
                .approvals
                .iter()
                .map(|a| GrantingApprover {
                    approver: a.approver.clone(),
                    roles: a.roles.clone(),
                    signature: a.signature.clone(),
                })
                .collect(),
            at,
        }
    }
}

fn mismatch(expected: &OverrideEvent, found: &OverrideEvent) -> OverrideError {
    OverrideError::Rebuild(format!(
        "expected the {} record the replay produces, found a different {} record",
        expected.event_type(),
        found.event_type()
    ))
}

fn role_names(roles: &BTreeSet<Role>) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_owned()).collect()
}

fn approve_action(record: &ApprovalGiven) -> OverrideAction {
    OverrideAction::Approve {
        approver: record.approver.clone(),
        roles: role_names(&record.roles),
        plan_hash: record.plan_hash.clone(),
        comment: record.comment.clone(),
        signature: record.signature.as_ref().map(|s| ApproverSignature {
            key_id: s.key_id.clone(),
            ed25519: s.ed25519.clone(),
        }),
        at: record.at,
    }
}

/// During a rebuild, the key an approval record says its signature verified against.
enum RecordedKey {
    None,
    Key {
        approver: String,
        key_id: String,
        public_key: [u8; 32],
    },
}

impl RecordedKey {
    fn of(record: &ApprovalGiven) -> Result<Self, OverrideError> {
        let Some(signature) = &record.signature else {
            return Ok(RecordedKey::None);
        };
        let public_key: [u8; 32] = STANDARD
            .decode(signature.public_key.as_bytes())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                OverrideError::Rebuild(format!(
                    "the public key recorded for {}'s signature is not 32 bytes of base64",
                    record.approver
                ))
            })?;
        Ok(RecordedKey::Key {
            approver: record.approver.clone(),
            key_id: signature.key_id.clone(),
            public_key,
        })
    }
}

impl ApproverKeys for RecordedKey {
    fn public_key(&self, approver: &str, key_id: &str) -> Option<[u8; 32]> {
        match self {
            RecordedKey::Key {
                approver: a,
                key_id: k,
                public_key,
            } if a == approver && k == key_id => Some(*public_key),
            RecordedKey::Key { .. } | RecordedKey::None => None,
        }
    }
}
