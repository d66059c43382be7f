//! The study operations (`StudyStorage`) as SQL: each one short transaction, retried by
//! `write` on serialization failures and dropped connections (the module's header says why
//! that cannot deadlock, lose or reorder records).

use super::*;

fn event_json(event: &Event) -> std::result::Result<String, String> {
    crate::study::events::record_json(event)
}

fn insert_event(tx: &mut Transaction, id: i32, body: &str) -> std::result::Result<(), postgres::Error> {
    tx.execute("INSERT INTO tune_events (study_id, body) VALUES ($1, $2)", &[&id, &body])?;
    Ok(())
}

impl StudyStorage for PgStorage {
    fn location(&self) -> String {
        format!("{} (study `{}`)", redact(&self.url), self.name)
    }

    fn create_or_open(&mut self, resolved: &Resolved, space_text: &str) -> Result<()> {
        let settings = serde_json::to_string(resolved).expect("serialisable");
        let name = self.name.clone();
        let space_text = space_text.to_string();
        let existing: Option<(i32, String)> = self.with_client("open study", |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tune_studies (name, settings, space) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&name, &settings, &space_text],
            )?;
            let row = tx.query_one("SELECT id, settings FROM tune_studies WHERE name = $1", &[&name])?;
            tx.commit()?;
            Ok(Some((row.get(0), row.get(1))))
        })?;
        let (id, frozen) = existing.expect("selected");
        let frozen: Resolved = serde_json::from_str(&frozen).map_err(|e| {
            self.err(
                format!("study `{name}`: its settings do not read back ({e})"),
                "delete the study (`tune study delete`) or restore the database",
            )
        })?;
        frozen.check_same_study(resolved, &self.location())?;
        self.id = Some(id);
        Ok(())
    }

    fn settings(&mut self) -> Result<Option<Resolved>> {
        let Some(id) = self.study_id()? else { return Ok(None) };
        let text: String = self.with_client("read settings", |c| {
            Ok(c.query_one("SELECT settings FROM tune_studies WHERE id = $1", &[&id])?.get(0))
        })?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            self.err(
                format!("study `{}`: its settings do not read back ({e})", self.name),
                "delete the study or restore the database",
            )
        })
    }

    fn reserve(&mut self, budget: usize) -> Result<Option<Reservation>> {
        let id = self.require_id()?;
        // The one serialized write, kept short: a single round trip whose one statement holds
        // the study row, committed without waiting for the disk. A reservation is not a
        // record: should a server crash lose it, `create` says so and the worker reserves
        // again; the durable commit of the `Created` record that follows covers it too.
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit = off; \
             WITH r AS (UPDATE tune_studies SET next_number = next_number + 1, budget_used = budget_used + 1 \
             WHERE id = {id} AND budget_used < {budget} RETURNING next_number - 1 AS number, next_number - 1 - retries AS draw) \
             INSERT INTO tune_trials (study_id, number, running, owner, draw) SELECT {id}, number, true, '{me}', draw FROM r RETURNING number, draw; COMMIT",
            budget = int(budget),
            me = self.worker.replace('\'', "''")
        );
        self.with_client("reserve a trial number", |c| {
            let messages = match c.simple_query(&sql) {
                Ok(m) => m,
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    return Err(e);
                }
            };
            Ok(messages.iter().find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => {
                    let field = |i| row.get(i).and_then(|v: &str| v.parse::<usize>().ok()).expect("integers");
                    Some(Reservation { number: field(0), draw: field(1) })
                }
                _ => None,
            }))
        })
    }

    fn create(&mut self, created: &Event) -> Result<bool> {
        let Event::Created { number, params, seed, infeasible, .. } = created else {
            panic!("create takes a Created event")
        };
        let body = event_json(created).map_err(|what| {
            self.err(
                format!("refusing to record {what}, which is not a finite number"),
                "this is a bug in tune; please report it",
            )
        })?;
        let (number, running) = (int(*number), infeasible.is_none());
        let (params, seed, me) =
            (serde_json::to_string(params).expect("serialisable"), *seed as i64, self.worker.clone());
        let id = self.require_id()?;
        let mut attempts = 0;
        self.with_client("create trial", |c| {
            attempts += 1;
            let mine: i64 = c.run(
                "WITH t AS (UPDATE tune_trials SET params = $3, seed = $4, running = $5 \
                   WHERE study_id = $1 AND number = $2 AND owner = $6 AND params IS NULL RETURNING 1), \
                 e AS (INSERT INTO tune_events (study_id, body) SELECT $1, $7 FROM t), \
                 b AS (UPDATE tune_studies SET budget_used = budget_used - 1 WHERE id = $1 AND NOT $5 AND EXISTS (SELECT 1 FROM t)) \
                 SELECT count(*) FROM t",
                &[&id, &number, &params, &seed, &running, &me, &body],
            )?[0]
                .get(0);
            if mine == 1 {
                return Ok(true);
            }
            // Lost meanwhile, or (on a retry) this very write went through before a dropped
            // connection hid its acknowledgement.
            Ok(attempts > 1
                && c.query_opt("SELECT 1 FROM tune_trials WHERE study_id = $1 AND number = $2 AND owner = $3 AND params = $4", &[&id, &number, &me, &params])?.is_some())
        })
    }

    fn cancel(&mut self, reservation: Reservation) -> Result<()> {
        let (number, me) = (int(reservation.number), self.worker.clone());
        self.write("cancel a reservation", |tx, id| {
            if tx.execute(
                "DELETE FROM tune_trials WHERE study_id = $1 AND number = $2 AND owner = $3 AND params IS NULL",
                &[&id, &number, &me],
            )? == 1
            {
                tx.execute("UPDATE tune_studies SET budget_used = budget_used - 1 WHERE id = $1", &[&id])?;
            }
            Ok(())
        })
    }

    fn record(&mut self, event: &Event) -> Result<bool> {
        let number = match event {
            Event::Epoch { number, .. } | Event::Finished { number, .. } | Event::Paused { number, .. } => int(*number),
            Event::Created { .. } => panic!("trials are created with `create`"),
            Event::Resumed { .. } => panic!("trials are resumed with `resume`"),
        };
        let body = event_json(event).map_err(|what| {
            self.err(
                format!("refusing to record {what}, which is not a finite number"),
                "a trial reported a non-finite figure; it is not recorded",
            )
        })?;
        let id = self.require_id()?;
        self.with_client("record event", |c| {
            // Only while the trial runs: a trial declared lost keeps that verdict.
            let rows = match event {
                Event::Finished { .. } => c.run(
                    "WITH t AS (UPDATE tune_trials SET running = false WHERE study_id = $1 AND number = $2 AND running RETURNING 1) \
                     INSERT INTO tune_events (study_id, body) SELECT $1, $3 FROM t RETURNING id",
                    &[&id, &number, &body],
                )?,
                Event::Paused { .. } => c.run(
                    "WITH t AS (UPDATE tune_trials SET running = false, paused = true WHERE study_id = $1 AND number = $2 AND running RETURNING 1) \
                     INSERT INTO tune_events (study_id, body) SELECT $1, $3 FROM t RETURNING id",
                    &[&id, &number, &body],
                )?,
                _ => c.run(
                    "WITH t AS (SELECT 1 FROM tune_trials WHERE study_id = $1 AND number = $2 AND running FOR UPDATE) \
                     INSERT INTO tune_events (study_id, body) SELECT $1, $3 FROM t RETURNING id",
                    &[&id, &number, &body],
                )?,
            };
            Ok(rows.len() == 1)
        })
    }

    fn replace_paused(&mut self, closed: &Event, make: &dyn Fn(usize) -> Event) -> Result<Option<usize>> {
        let Event::Finished { number: replaces, .. } = closed else { panic!("replace_paused takes a Finished event") };
        let replaces = int(*replaces);
        let closed = event_json(closed).map_err(|what| {
            self.err(format!("refusing to record {what}, which is not a finite number"), "this is a bug in tune")
        })?;
        let me = self.worker.clone();
        let mut attempts = 0;
        self.write("replace a paused trial", |tx, id| {
            attempts += 1;
            let closing = tx.query(
                "UPDATE tune_trials SET paused = false WHERE study_id = $1 AND number = $2 AND paused RETURNING 1",
                &[&id, &replaces],
            )?;
            if closing.is_empty() {
                // On a retry: this very replacement may have committed before the connection
                // dropped; its fork names the trial it replaced, and still runs under this
                // worker (not reaped meanwhile: then its re-run is someone else's).
                if attempts == 1 {
                    return Ok(None);
                }
                let mine = tx.query_opt(
                    "SELECT t.number FROM tune_events e JOIN tune_trials t \
                       ON t.study_id = e.study_id AND t.number = (e.body::jsonb ->> 'number')::int \
                     WHERE e.study_id = $1 AND e.body::jsonb -> 'fork' ->> 'replaces' = $2::int::text AND t.owner = $3 AND t.running",
                    &[&id, &replaces, &me],
                )?;
                return Ok(mine.map(|row| row.get::<_, i32>(0) as usize));
            }
            insert_event(tx, id, &closed)?;
            // A number outside the budget, as a re-run's: it shifts no sampler draw.
            let number: i32 = tx
                .query_one(
                    "UPDATE tune_studies SET next_number = next_number + 1, retries = retries + 1 WHERE id = $1 RETURNING next_number - 1",
                    &[&id],
                )?
                .get(0);
            let created = make(number as usize);
            let Event::Created { params, seed, .. } = &created else { panic!("a fork is created with a Created event") };
            let (params, seed) = (serde_json::to_string(params).expect("serialisable"), *seed as i64);
            tx.execute(
                "INSERT INTO tune_trials (study_id, number, running, owner, params, seed) VALUES ($1, $2, true, $3, $4, $5)",
                &[&id, &number, &me, &params, &seed],
            )?;
            insert_event(tx, id, &event_json(&created).expect("a created trial's numbers are finite"))?;
            Ok(Some(number as usize))
        })
    }

    fn resume(&mut self, number: usize) -> Result<bool> {
        let body = event_json(&Event::Resumed { number }).expect("no numbers to check");
        let (number, me) = (int(number), self.worker.clone());
        let id = self.require_id()?;
        let mut attempts = 0;
        self.with_client("resume a paused trial", |c| {
            attempts += 1;
            let rows = c.run(
                "WITH t AS (UPDATE tune_trials SET running = true, paused = false, owner = $3, beat_at = now() \
                   WHERE study_id = $1 AND number = $2 AND paused RETURNING 1) \
                 INSERT INTO tune_events (study_id, body) SELECT $1, $4 FROM t RETURNING id",
                &[&id, &number, &me, &body],
            )?;
            if rows.len() == 1 {
                return Ok(true);
            }
            // On a retry: this very claim may have gone through before a dropped connection.
            Ok(attempts > 1
                && c.query_opt(
                    "SELECT 1 FROM tune_trials WHERE study_id = $1 AND number = $2 AND owner = $3 AND running",
                    &[&id, &number, &me],
                )?
                .is_some())
        })
    }

    fn close_paused(&mut self, finished: &Event) -> Result<bool> {
        let Event::Finished { number, .. } = finished else { panic!("close_paused takes a Finished event") };
        let number = int(*number);
        let body = event_json(finished).map_err(|what| {
            self.err(format!("refusing to record {what}, which is not a finite number"), "this is a bug in tune")
        })?;
        let id = self.require_id()?;
        let mut attempts = 0;
        self.with_client("close a paused trial", |c| {
            attempts += 1;
            let rows = c.run(
                "WITH t AS (UPDATE tune_trials SET paused = false WHERE study_id = $1 AND number = $2 AND paused RETURNING 1) \
                 INSERT INTO tune_events (study_id, body) SELECT $1, $3 FROM t RETURNING id",
                &[&id, &number, &body],
            )?;
            if rows.len() == 1 {
                return Ok(true);
            }
            // On a retry: this very close may have gone through before a dropped connection,
            // and then its event is there, word for word.
            Ok(attempts > 1
                && c.query_opt("SELECT 1 FROM tune_events WHERE study_id = $1 AND body = $2", &[&id, &body])?.is_some())
        })
    }

    fn read_since(&mut self, cursor: Cursor) -> Result<(Vec<Stamped>, Cursor)> {
        let Some(id) = self.study_id()? else { return Ok((Vec::new(), cursor)) };
        let (xid, event) = (cursor.0 as i64, cursor.1 as i64);
        let rows = self.with_client("read events", |c| {
            c.run(
                "SELECT xid, id, body FROM tune_events WHERE study_id = $1 AND (xid, id) > ($2, $3) \
                 AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint ORDER BY xid, id",
                &[&id, &xid, &event],
            )
        })?;
        let mut events = Vec::with_capacity(rows.len());
        let mut last = cursor;
        for row in rows {
            let (xid, event_id, body): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            let event = serde_json::from_str(&body).map_err(|e| {
                self.err(
                    format!("event {event_id} of study `{}` does not read back ({e})", self.name),
                    "restore the database from a backup",
                )
            })?;
            events.push(event);
            last = Cursor(xid as u64, event_id as u64);
        }
        Ok((events, last))
    }

    fn take_queued(&mut self) -> Result<Option<Queued>> {
        let me = self.worker.clone();
        self.write("take a queued trial", |tx, id| {
            let row = tx.query_opt(
                "UPDATE tune_trials SET owner = $2, beat_at = now() WHERE study_id = $1 AND number = \
                 (SELECT number FROM tune_trials WHERE study_id = $1 AND running AND owner IS NULL ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING number, draw, params IS NOT NULL",
                &[&id, &me],
            )?;
            Ok(row.map(|r| {
                let (number, draw, sampled): (i32, i32, bool) = (r.get(0), r.get(1), r.get(2));
                if sampled { Queued::Run(number as usize) } else { Queued::Sample(Reservation { number: number as usize, draw: draw as usize }) }
            }))
        })
    }

    fn release(&mut self, numbers: &[usize]) -> Result<()> {
        self.update_mine("release trials", numbers, "UPDATE tune_trials SET owner = NULL WHERE (study_id, number) IN")
    }

    fn heartbeat(&mut self, numbers: &[usize]) -> Result<()> {
        self.update_mine("heartbeat", numbers, "UPDATE tune_trials SET beat_at = now() WHERE (study_id, number) IN")
    }

    fn reap(&mut self, liveness: &Liveness) -> Result<Vec<Reaped>> {
        if self.reconnected.is_some_and(|at| at.elapsed() < liveness.grace) {
            return Ok(Vec::new()); // heartbeats could not reach the store during the outage
        }
        let grace = liveness.grace.as_secs_f64();
        let max_retries = liveness.max_retries as i32;
        self.write("reap lost trials", |tx, id| {
            // Rows being written are alive (or being reaped by another worker): skipped.
            let stale = tx.query(
                "SELECT number, owner, params, seed, attempt, EXTRACT(EPOCH FROM now() - beat_at)::float8, draw FROM tune_trials \
                 WHERE study_id = $1 AND running AND owner IS NOT NULL AND beat_at < now() - make_interval(secs => $2) ORDER BY number FOR UPDATE SKIP LOCKED",
                &[&id, &grace],
            )?;
            let mut reaped = Vec::new();
            for row in stale {
                let (number, owner, params, seed, attempt, age): (i32, String, Option<String>, i64, i32, f64) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
                let Some(params) = params else {
                    // Lost before it sampled its configuration: the number is sampled by whoever takes it.
                    tx.execute("UPDATE tune_trials SET owner = NULL WHERE study_id = $1 AND number = $2", &[&id, &number])?;
                    let reason = format!("worker lost: {owner} sent no heartbeat for {age:.0} s (grace {grace:.0} s) before sampling; number {number} re-queued");
                    reaped.push(Reaped { lost: number as usize, retry: Some(number as usize), reason });
                    continue;
                };
                let retry = if attempt < max_retries {
                    let next: i32 = tx
                        .query_one("UPDATE tune_studies SET next_number = next_number + 1, retries = retries + 1 WHERE id = $1 RETURNING next_number - 1", &[&id])?
                        .get(0);
                    Some(next)
                } else {
                    None
                };
                let reason = match retry {
                    Some(r) => format!("worker lost: {owner} sent no heartbeat for {age:.0} s (grace {grace:.0} s); re-run as trial {r}"),
                    None => format!("worker lost: {owner} sent no heartbeat for {age:.0} s (grace {grace:.0} s); not re-run after {attempt} retries"),
                };
                let finished = Event::Finished { number: number as usize, state: TrialState::Failed, reason: Some(reason.clone()), secs: 0.0 };
                insert_event(tx, id, &event_json(&finished).expect("a reaped trial's numbers are finite"))?;
                tx.execute("UPDATE tune_trials SET running = false WHERE study_id = $1 AND number = $2", &[&id, &number])?;
                if let Some(r) = retry {
                    let params_map = serde_json::from_str(&params).expect("written by tune");
                    // A lost PBT fork is re-run as the same fork (its parent's checkpoint, its
                    // changes); it replaces no trial itself.
                    let fork = tx
                        .query_opt(
                            "SELECT body FROM tune_events WHERE study_id = $1 AND body::jsonb ->> 'event' = 'created' \
                             AND (body::jsonb ->> 'number')::int = $2 ORDER BY id LIMIT 1",
                            &[&id, &number],
                        )?
                        .and_then(|row| serde_json::from_str::<Stamped>(&row.get::<_, String>(0)).ok())
                        .and_then(|s| match s.event {
                            Event::Created { fork, .. } => fork,
                            _ => None,
                        })
                        .map(|f| Fork { replaces: None, ..f });
                    let created = Event::Created { number: r as usize, params: params_map, seed: seed as u64, infeasible: None, retry_of: Some(number as usize), fork };
                    insert_event(tx, id, &event_json(&created).expect("a created trial's numbers are finite"))?;
                    tx.execute(
                        "INSERT INTO tune_trials (study_id, number, running, owner, params, seed, draw, attempt) VALUES ($1, $2, true, NULL, $3, $4, $6, $5)",
                        &[&id, &r, &params, &seed, &(attempt + 1), &row.get::<_, i32>(6)],
                    )?;
                }
                reaped.push(Reaped { lost: number as usize, retry: retry.map(|r| r as usize), reason });
            }
            Ok(reaped)
        })
    }
}
