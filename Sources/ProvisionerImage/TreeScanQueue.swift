import Dispatch
import Synchronization

extension TreeScanner {
    /// The directories still to list, shared by the scanning threads. A thread with nothing to do
    /// sleeps on `ready` (one signal per directory queued), so threads beyond the cores cost
    /// nothing while they wait: on a cold cache the scan waits on the disk for each directory and
    /// inode block, and more threads keep more of those reads in flight.
    final class Work: @unchecked Sendable {
        struct Item {
            var path: [UInt8]
            var fd: Int32
        }
        struct Queue {
            var items: [Item] = []
            var active = 0
            var finished = false
        }
        let queue = Mutex<Queue>(Queue())
        let ready = DispatchSemaphore(value: 0)
        let results = Mutex<[[(TreePath, Observed)]]>([])
        let failure = Mutex<(any Error)?>(nil)
        let threads: Int
        init(threads: Int) { self.threads = threads }

        /// Queues directories found (or, first, the root).
        func push(_ items: [Item], finishedOne: Bool) {
            let wake = queue.withLock { q -> Int in
                q.items.append(contentsOf: items)
                if finishedOne { q.active -= 1 }
                if q.active == 0 && q.items.isEmpty && !q.finished {
                    q.finished = true
                    return threads  // every thread wakes to see the end
                }
                return items.count
            }
            for _ in 0..<wake { ready.signal() }
        }

        /// Stops every thread after a failure.
        func fail(_ error: any Error) {
            failure.withLock { if $0 == nil { $0 = error } }
            let wake = queue.withLock { q -> Int in
                q.active -= 1
                if q.finished { return 0 }
                q.finished = true
                return threads
            }
            for _ in 0..<wake { ready.signal() }
        }

        /// The next directory to list; nil when the scan is over.
        func next() -> Item? {
            while true {
                ready.wait()
                let (item, over): (Item?, Bool) = queue.withLock { q in
                    if q.finished { return (nil, true) }
                    guard let item = q.items.popLast() else { return (nil, false) }
                    q.active += 1
                    return (item, false)
                }
                if let item { return item }
                if over {
                    ready.signal()  // pass the end on
                    return nil
                }
            }
        }
    }
}
