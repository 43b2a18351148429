// htm bound to Preact's h: every view writes html`…`. Text children and attribute values are set through the
// DOM (text nodes, setAttribute), never parsed as HTML, so whatever comes from outside shows as text.
import { h } from 'preact'
import htm from 'htm'

export const html = htm.bind(h)
