package mux

// Answers to the peer's opens, in order. On a wire whose Acks carry no
// stream number (Plan5's: an Ack answers the oldest Connect not yet
// answered), every answer must leave in the order the opens came. With
// ManualAck the application answers when it likes, and the session
// itself refuses some opens at once (draining, a full backlog): an
// answer that overtook one still owed would be taken for that one's,
// and one client would get another's session. So under ManualAck on
// such a wire each open takes a slot, and answers leave from the head.

// answerSlot is one open's place in the order of answers.
type answerSlot struct {
	ready bool
	f     *Frame
	after func()        // runs once f is queued (the initial grant of an accepted stream)
	sent  chan struct{} // closed once f is queued (or the session has ended)
}

// orderedAnswers reports whether the session must order its answers.
func (s *Session) orderedAnswers() bool {
	return s.cfg.ManualAck && !s.sem.OpenerAssignsID
}

// answerSlotLocked takes the next slot in the order. s.mu is held.
func (s *Session) answerSlotLocked() *answerSlot {
	a := &answerSlot{sent: make(chan struct{})}
	s.answers = append(s.answers, a)
	return a
}

// unanswered fills st's slot with a refusal if st goes away before it
// is answered (the peer closed it): its open is still owed an answer,
// and every later answer waits for it.
func (st *Stream) unanswered(reason string) {
	st.mu.Lock()
	owed := !st.acked && st.answer != nil
	st.acked = true
	st.mu.Unlock()
	if !owed {
		return
	}
	if reason == "" {
		reason = "rtcp: refused"
	}
	st.s.answer(st.answer, &Frame{Kind: KindAck, ID: -1, Reason: reason}, nil)
}

// waitSent waits until the answer of slot a is queued, so that nothing
// the stream sends after its Ack can go before it.
func (s *Session) waitSent(a *answerSlot) {
	if a == nil {
		return
	}
	select {
	case <-a.sent:
	case <-s.done:
	}
}

// answer sends f (then runs after) as the answer of slot a, once the
// answers of every open before it have gone; nil a sends at once.
func (s *Session) answer(a *answerSlot, f *Frame, after func()) bool {
	if a == nil {
		ok := s.enqueue(f)
		if ok && after != nil {
			after()
		}
		return ok
	}
	// answerMu keeps the frames freed by one call together and ahead of
	// those a later call frees.
	s.answerMu.Lock()
	defer s.answerMu.Unlock()
	s.mu.Lock()
	a.ready, a.f, a.after = true, f, after
	var out []*answerSlot
	for len(s.answers) > 0 && s.answers[0].ready {
		out = append(out, s.answers[0])
		s.answers[0] = nil
		s.answers = s.answers[1:]
	}
	s.mu.Unlock()
	ok := true
	for _, x := range out {
		if !s.enqueue(x.f) {
			ok = false
		} else if x.after != nil {
			x.after()
		}
		close(x.sent)
	}
	return ok
}
