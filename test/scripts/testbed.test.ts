import { spawnSync } from 'node:child_process'
import t from 'tap'
import { Testbed } from '../../scripts/testbed.ts'

const unavailable = Testbed.unavailableReason()
if (unavailable != null && process.env.CI === 'true') t.fail(`network namespaces are required in CI: ${unavailable}`)

t.test('the testbed cuts, partitions and heals links between its hosts', { skip: unavailable ?? false }, async (t) => {
  const bed = new Testbed().create(4)
  t.teardown(bed.destroy)
  // One ICMP echo with a short deadline: reachable or not, nothing else.
  const reaches = (from: number, to: number) =>
    spawnSync('ip', ['netns', 'exec', bed.hosts[from] as string, 'ping', '-c1', '-W1', bed.address(to)], { stdio: 'ignore' }).status === 0

  t.ok(reaches(0, 3), 'all hosts reach each other on one switch')
  bed.cut(3)
  t.notOk(reaches(0, 3), 'a cut host is unreachable')
  bed.heal(3)
  t.ok(reaches(0, 3), 'and back once healed')

  bed.partition([[0, 1], [2, 3]])
  t.ok(reaches(0, 1), 'hosts of one side still reach each other')
  t.ok(reaches(2, 3), 'on both sides')
  t.notOk(reaches(1, 2), 'but not across the partition')
  bed.partition([[0], [1, 2, 3]])
  t.ok(reaches(1, 2), 'a new partition replaces the old one')
  t.notOk(reaches(0, 1))
  bed.healAll()
  t.ok(reaches(0, 2) && reaches(1, 3), 'healAll puts everyone back on one switch')

  const prefix = bed.prefix
  bed.destroy()
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout
  t.notMatch(left, new RegExp(prefix), 'destroy removes every namespace it made')
})
