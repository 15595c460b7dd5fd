"""Clearing tells a reversal of an exchange apart from other reversals (component kind "exchange_reversal"), so that
the revenue share can read the month's exchanges, reversals included, from the clearing runs.

Runs already netted are split the same way: the entries of each run's day that reverse an exchange are summed per
party (and merchant) from the ledger, taken out of the "reversal" component and put in an "exchange_reversal" one.
Positions do not change: the same entries, under another label."""

from django.db import migrations, models

SPLIT = """
CREATE TEMPORARY TABLE exchange_reversal_parts ON COMMIT DROP AS
SELECT r.id AS run_id,
       CASE a.owner_kind WHEN 'bank' THEN a.owner_id WHEN 'merchant' THEN m.sponsor_bank_id END AS bank_id,
       CASE WHEN a.owner_kind = 'merchant' THEN a.owner_id END AS merchant_id,
       count(*) AS n, sum(greatest(e.amount, 0)) AS receivable, sum(greatest(-e.amount, 0)) AS payable,
       sum(e.amount) AS amount
FROM alliance_clearingrun r
JOIN rewards_ledgertransaction t
  ON t.created_at >= (r.business_day::timestamp AT TIME ZONE 'Asia/Shanghai')
 AND t.created_at < ((r.business_day + 1)::timestamp AT TIME ZONE 'Asia/Shanghai')
JOIN rewards_ledgertransaction x ON x.id = t.reverses_id
JOIN rewards_entry e ON e.transaction_id = t.id
JOIN rewards_account a ON a.id = e.account_id
LEFT JOIN merchants_merchant m ON a.owner_kind = 'merchant' AND m.id = a.owner_id
WHERE r.status <> 'computing' AND t.kind = 'reversal' AND x.kind = 'exchange'
  AND a.purpose IN ('clearing', 'fees') AND e.unit = r.currency
GROUP BY 1, 2, 3;

UPDATE alliance_clearingcomponent c
SET count = c.count - s.n, receivable = c.receivable - s.receivable, payable = c.payable - s.payable,
    amount = c.amount - s.amount
FROM exchange_reversal_parts s
WHERE c.run_id = s.run_id AND c.kind = 'reversal'
  AND c.bank_id IS NOT DISTINCT FROM s.bank_id AND c.merchant_id IS NOT DISTINCT FROM s.merchant_id;

DELETE FROM alliance_clearingcomponent WHERE kind = 'reversal' AND count = 0;

INSERT INTO alliance_clearingcomponent
(run_id, position_id, bank_id, kind, merchant_id, count, receivable, payable, amount)
SELECT s.run_id, pos.id, s.bank_id, 'exchange_reversal', s.merchant_id, s.n, s.receivable, s.payable, s.amount
FROM exchange_reversal_parts s
JOIN alliance_clearingposition pos ON pos.run_id = s.run_id AND pos.bank_id IS NOT DISTINCT FROM s.bank_id;
"""

JOIN_BACK = """
UPDATE alliance_clearingcomponent c
SET count = c.count + s.count, receivable = c.receivable + s.receivable, payable = c.payable + s.payable,
    amount = c.amount + s.amount
FROM alliance_clearingcomponent s
WHERE s.kind = 'exchange_reversal' AND c.kind = 'reversal' AND c.run_id = s.run_id
  AND c.bank_id IS NOT DISTINCT FROM s.bank_id AND c.merchant_id IS NOT DISTINCT FROM s.merchant_id;

UPDATE alliance_clearingcomponent s SET kind = 'reversal'
WHERE s.kind = 'exchange_reversal' AND NOT EXISTS (
  SELECT 1 FROM alliance_clearingcomponent c
  WHERE c.kind = 'reversal' AND c.run_id = s.run_id
    AND c.bank_id IS NOT DISTINCT FROM s.bank_id AND c.merchant_id IS NOT DISTINCT FROM s.merchant_id);

DELETE FROM alliance_clearingcomponent WHERE kind = 'exchange_reversal';
"""


class Migration(migrations.Migration):
    dependencies = [("alliance", "0008_instruction_resends"), ("rewards", "0001_ledger")]

    operations = [
        migrations.AlterField(
            model_name="clearingcomponent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("exchange_out", "points exchanged out"),
                    ("exchange_in", "points exchanged in"),
                    ("exchange_fee", "exchange fee"),
                    ("exchange_reversal", "exchange reversed"),
                    ("funded_points", "funded points"),
                    ("benefit_redemption", "benefit redemption"),
                    ("cofunding", "promotion co-funding"),
                    ("reversal", "reversal"),
                    ("other", "other"),
                ],
                max_length=24,
                verbose_name="kind",
            ),
        ),
        migrations.RunSQL(SPLIT, JOIN_BACK),
    ]
