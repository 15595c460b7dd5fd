"""A ledger transaction refers to its idempotency key's row; the key's row no longer refers to the transaction.

`rewards_ledgerkey` keeps an idempotency key unique across every month of the partitioned transactions (0023). Its
foreign key to the transaction made every month of transactions referred to by a table that is not partitioned, so
PostgreSQL would never let a month be detached to an archive while its keys' rows lived, and those rows must outlive
their month: a key's row is what refuses the key to a later posting.

So the key now points the other way. The transaction's `(idempotency_key, id, created_at)` refers to the key's
`(idempotency_key, transaction_id, transaction_created_at)`, unique for the purpose: every transaction has taken its
key (a posting that writes no key's row, or one naming another transaction or time, fails at commit), and the key's
row names its transaction exactly. The key's row is the referred-to side, so a month of transactions may go to an
archive while its keys stay to refuse a second posting. The key is `ON UPDATE CASCADE`: a transaction is dated back
(the demo's history) by updating its key's `transaction_created_at`, which the transaction, and then its entries and
other referrers, follow. Both are checked at commit (DEFERRABLE INITIALLY DEFERRED), as every ledger key is: a
posting writes its transaction's row before its key's.

A posting now writes the key's row first (`posting.transaction_keyed`), with the transaction's id drawn from its
sequence and its time, so that a second posting with the key stops before writing anything, and so that a posting
works with the keys checked at each statement too (`SET CONSTRAINTS ALL IMMEDIATE`).

Backwards, the key's foreign key to the transaction comes back and the transaction's, with its unique target, goes.
"""

import django.utils.timezone
from django.db import migrations, models

FORWARD = """
SET CONSTRAINTS ALL IMMEDIATE;
-- IF EXISTS: on a database distributed on Citus, `citus_distribute` dropped it already.
ALTER TABLE rewards_ledgerkey DROP CONSTRAINT IF EXISTS rewards_ledgerkey_transaction_id_fk;
ALTER TABLE rewards_ledgerkey ADD CONSTRAINT rewards_ledgerkey_names_its_transaction
    UNIQUE (idempotency_key, transaction_id, transaction_created_at);
ALTER TABLE rewards_ledgertransaction ADD CONSTRAINT rewards_ledgertransaction_key_fk
    FOREIGN KEY (idempotency_key, id, created_at)
    REFERENCES rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)
    ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
SET CONSTRAINTS ALL DEFERRED;
"""

BACKWARD = """
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE rewards_ledgertransaction DROP CONSTRAINT IF EXISTS rewards_ledgertransaction_key_fk;
ALTER TABLE rewards_ledgerkey DROP CONSTRAINT rewards_ledgerkey_names_its_transaction;
ALTER TABLE rewards_ledgerkey ADD CONSTRAINT rewards_ledgerkey_transaction_id_fk
    FOREIGN KEY (transaction_id, transaction_created_at) REFERENCES rewards_ledgertransaction (id, created_at)
    ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
SET CONSTRAINTS ALL DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [("rewards", "0025_account_and_entry_spread")]
    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
        # A posting writes the key's row first, with the transaction's time, and the transaction then with that time:
        # set by the code rather than at the insert (no change in the database).
        migrations.AlterField(
            model_name="ledgertransaction",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False, verbose_name="created"),
        ),
    ]
