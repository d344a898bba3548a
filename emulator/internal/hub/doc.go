// Package hub is the behaviour of IoT Hub: the identity registry, device
// twins (versions, etags, $metadata, merge rules), direct-method
// correlation and timeouts, device connections, cloud-to-device messages
// and feedback, telemetry, jobs and automatic configurations.
//
// It knows nothing of MQTT, AMQP, HTTP or the storage engine. The faces
// call it: the broker for MQTT devices, the AMQP engine and the REST face
// for back-end apps. It keeps every device in memory for fast reads and
// queries and writes each change through a Store before acknowledging it,
// so what the hub acknowledged survives a crash.
//
// Each device has one writer lock, held while its change is committed, so
// changes to one device are applied and delivered in order while different
// devices commit concurrently (and share commits where the Store batches
// them). Readers never take it: a device's persisted state is an immutable
// snapshot swapped in after each commit.
//
// # Locking
//
// The locks, and what each guards:
//
//	Hub.mu            RWMutex: the device map, the sorted index, ids being created
//	Hub.jobMu         the job map and the closing flag
//	job.mu            one job's state, its device jobs and their order
//	cfgState.mu       the configurations by id
//	queue.mu          a service-bound queue's waiting items (feedback, file notifications)
//	entry.mu          one device's writer: held across its store commit
//	                  (deleting a device holds its own, then its modules' in key order)
//	entry.connMu      the device's current connection and its change channel
//	Conn.sentMu       the lock tokens of C2D messages sent on a connection
//	Conn.callsMu      the method calls pending on a connection
//	fileState.mu      the file uploads begun
//	resilience.mu     the emulated tier's buckets and quota, the latency, the faults
//	activityFeed.mu   the activity feed's ring
//
// Order: a goroutine that holds several takes them top to bottom in this
// list and never the other way. An entry's gone flag is set under both
// entry.mu and connMu, so a writer (under entry.mu) never commits to a
// deleted identity and a connection (attached under connMu) never
// outlives the deletion or disabling of its identity or its device. In practice Hub.mu is released before any
// entry lock is taken (h.entry looks a device up and returns), jobMu
// before job.mu, and cfgState.mu is never held while twins are written
// (metrics are counted after it is released). entry.mu may be held while
// connMu, sentMu or callsMu is taken; those three are leaves, as are
// queue.mu, taken under entry.mu when feedback is queued and never held
// across its store write, fileState.mu, never held across the storage
// account's I/O, resilience.mu, released before a fault closes
// connections or Admit waits, and activityFeed.mu.
//
// # Locks and I/O
//
// No hub lock is held across network I/O. Deliveries to a device go
// through its Link, whose Send methods only queue (the broker writes them
// from a goroutine of the link, each write with a deadline), so entry.mu
// may be held while a desired notification is handed over, which keeps
// notifications in version order, without a device that stops reading
// stalling anyone. entry.mu is held across the Store's commit, which is
// disk I/O: that is the point of it.
//
// # Time
//
// Timestamps come from Options.Now. Method and job timeouts and the
// configuration interval use the runtime's timers.
package hub
