import BudgetLedger
import BudgetWire

/// The budget one request holds while it is in flight: committed once with the real usage, or else given
/// back when it goes out of scope, whatever path the request took. This is the one place a hold is released.
struct BudgetHold: ~Copyable {
    /// The control plane's reservation id; 0 when nothing is held (no budget applies, or the control plane
    /// could not be asked and the loss policy let the request through).
    let reservation: UInt64
    private let link: ControlLink
    private var settled = false

    init(reservation: UInt64, link: ControlLink) {
        self.reservation = reservation
        self.link = link
    }

    /// Replaces the hold with the usage the provider reported (the commit also frees what was held).
    consuming func commit(_ charges: [Charge]) {
        settled = true
        link.commit(BudgetMessages.Commit(reservation: reservation, charges: charges))
    }

    deinit {
        if !settled { link.release(reservation) }
    }
}
