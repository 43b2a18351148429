import t from 'tap'
import { FetchRefusedError, NoodleError } from '../../common/errors.ts'

t.test('a refused model fetch is a NoodleError with a code and its refusal reason', async (t) => {
  const err = new FetchRefusedError('hash-mismatch', 'the bytes it sent hash to 0123…, not 4567…')
  t.ok(err instanceof NoodleError)
  t.match(err, { name: 'FetchRefusedError', code: 'ERR_FETCH_REFUSED', reason: 'hash-mismatch', message: /hash to/ })
})
